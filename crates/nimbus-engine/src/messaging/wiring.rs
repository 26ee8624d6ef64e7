//! The messaging bundle: the broker, the queue mappings that consume it, and
//! the dispatcher whose asynchronous invocations deliver into it.
//!
//! There is one genuine cycle here. An asynchronous invocation's destination
//! may be a topic (`OnSuccess: arn:aws:sns:…`), and a topic fans out to
//! functions through the dispatcher's async path again. The async invoker
//! therefore needs the topics, and the topics need the async invoker.
//!
//! It is broken by construction, with [`Arc::new_cyclic`]: the topic service
//! is built around a dispatcher whose async invoker holds a *weak* handle to
//! that same topic service ([`MessagingDestinations::topics`]). Every other
//! edge is a plain constructor argument, so no service is wired after it is
//! built (the `set_destination_sink` and `set_workflows` setters are gone)
//! and none can be used half-wired. A channel from the async invoker to a
//! delivery task was the alternative; it would have needed an answer channel
//! too (a failed destination keeps the event as a dead letter, so the invoker
//! must know), and a task whose lifetime is one more thing to shut down, for
//! the same one back-edge the weak handle expresses.

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use serde_json::Value;

use super::queues::{Queues, SendRequest};
use super::topics::{Publish, TopicService};
use super::{ArnScope, DeliveryGrants, MessagingError, arn_resource};
use crate::control::registry::Registry;
use crate::dispatch::Dispatcher;
use crate::invoker::DestinationSink;
use crate::sources::queue_mappings::EventSources;
use crate::{EngineConfig, EngineError};

/// Asynchronous-invocation destinations that are queues or topics: the record
/// is the message body, as on Lambda.
pub struct MessagingDestinations {
    pub queues: Arc<Queues>,
    /// Weak: the topic service itself holds (through its dispatcher) the
    /// async invoker that holds this.
    pub topics: Weak<TopicService>,
}

#[async_trait]
impl DestinationSink for MessagingDestinations {
    async fn deliver(&self, arn: &str, record: Value) -> Result<(), EngineError> {
        let fail = |e: MessagingError| EngineError::Conflict(format!("{arn}: {e}"));
        if let Some(queue) = arn_resource(arn, "sqs") {
            self.queues
                .send(queue, SendRequest::body(record.to_string(), "AWS.Lambda"))
                .await
                .map_err(fail)?;
            return Ok(());
        }
        if let Some(topic) = arn_resource(arn, "sns") {
            let topics = self.topics.upgrade().ok_or(EngineError::ShuttingDown)?;
            topics
                .publish(topic, Publish::message(record.to_string()))
                .await
                .map_err(fail)?;
            return Ok(());
        }
        Err(EngineError::Conflict(format!(
            "unsupported destination {arn}"
        )))
    }
}

/// Queues, topics and mappings together, as the API and the server hold them.
pub struct Messaging {
    pub queues: Arc<Queues>,
    pub topics: Arc<TopicService>,
    pub mappings: Arc<EventSources>,
    /// Grants of the functions that set deliveries up, re-checked at delivery.
    pub grants: Arc<DeliveryGrants>,
    /// The door every event source uses, built here (see the module docs).
    pub dispatcher: Arc<Dispatcher>,
}

impl Messaging {
    /// Builds the services on the messaging stores of `stores`. `dispatcher`
    /// builds the dispatcher given the destinations its async invocations
    /// deliver queue and topic records to. `node` is this node's id (the
    /// owner of the mappings' leases).
    pub fn new(
        stores: &nimbus_store::Backends,
        node: &str,
        registry: Arc<Registry>,
        config: EngineConfig,
        dispatcher: impl FnOnce(Arc<dyn DestinationSink>) -> Arc<Dispatcher>,
    ) -> Self {
        let arns = ArnScope {
            region: config.region.clone(),
            account_id: config.account_id.clone(),
        };
        let grants = Arc::new(DeliveryGrants::new(registry));
        let queues = Arc::new(Queues::new(
            stores.queue_catalog.clone(),
            stores.queue_data.clone(),
            arns.clone(),
            grants.clone(),
        ));
        let topics = Arc::new_cyclic(|topics: &Weak<TopicService>| {
            let dispatcher = dispatcher(Arc::new(MessagingDestinations {
                queues: queues.clone(),
                topics: topics.clone(),
            }));
            TopicService::new(
                stores.topics.clone(),
                queues.clone(),
                dispatcher,
                arns,
                grants.clone(),
            )
        });
        let dispatcher = topics.dispatcher().clone();
        let mappings = EventSources::new(
            stores.mappings.clone(),
            stores.leases.clone(),
            node,
            queues.clone(),
            dispatcher.clone(),
            config,
        );
        Self {
            queues,
            topics,
            mappings,
            grants,
            dispatcher,
        }
    }

    /// The trace header for what `function` (a caller's principal) sends
    /// now, its request having come with the trace header `sent`: the chain
    /// of events it is handling (recursive loop detection).
    pub fn trace_of(&self, function: Option<&str>, sent: Option<&str>) -> Option<String> {
        function.and_then(|f| self.dispatcher.chain_of(f, sent))
    }
}

/// Stopping: pollers take no new batches and long polls end now. Draining
/// waits for the batches in flight (after the invoker's drain, which bounds
/// their invocations).
#[async_trait::async_trait]
impl crate::lifecycle::Service for Messaging {
    fn name(&self) -> &'static str {
        "messaging"
    }

    fn stop_accepting(&self) {
        self.queues.shutdown();
        self.mappings.begin_shutdown();
    }

    async fn drain(&self, _deadline: tokio::time::Instant) {
        self.mappings.shutdown().await;
    }
}
