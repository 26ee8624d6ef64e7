//! Bucket notifications to functions: the S3 side.
//!
//! PutBucketNotificationConfiguration stores the bucket's
//! `LambdaFunctionConfigurations` (events such as `s3:ObjectCreated:*`,
//! prefix/suffix key filters, the function's ARN or name) with the bucket,
//! as JSON the store does not interpret. Setting it needs the bucket grant
//! and, for a function caller, a `lambda:<target>` grant too, so a function
//! cannot make a bucket invoke functions it may not invoke itself.
//!
//! This module only reads and renders the XML configuration; matching events
//! against the rules, the event record and delivery are the engine's event
//! source ([`nimbus_engine::sources::object_events`]). A write asks it for
//! the notifications it triggers before committing, hands them to the store
//! with the object (they commit together), and wakes the relay after.

use nimbus_engine::sources::object_events::{Rule, stored_rules};
use nimbus_store::{BucketInfo, Notification};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::convert::store_error;
use super::{NimbusS3, principal};

const EVENTS: [&str; 2] = ["s3:ObjectCreated:", "s3:ObjectRemoved:"];

pub(crate) fn parse_rules(config: &NotificationConfiguration) -> S3Result<Vec<Rule>> {
    let unsupported = config
        .queue_configurations
        .as_ref()
        .is_some_and(|q| !q.is_empty())
        || config
            .topic_configurations
            .as_ref()
            .is_some_and(|t| !t.is_empty())
        || config.event_bridge_configuration.is_some();
    if unsupported {
        return Err(s3_error!(
            NotImplemented,
            "only LambdaFunctionConfigurations are supported"
        ));
    }
    let mut rules = Vec::new();
    for c in config.lambda_function_configurations.iter().flatten() {
        let events: Vec<String> = c
            .events
            .iter()
            .map(|e| AsRef::<str>::as_ref(e).to_string())
            .collect();
        if events.is_empty()
            || !events
                .iter()
                .all(|e| EVENTS.iter().any(|p| e.starts_with(p)))
        {
            return Err(s3_error!(
                InvalidArgument,
                "The event is not supported for notifications: {events:?}"
            ));
        }
        let mut rule = Rule {
            id: c.id.clone(),
            function_arn: c.lambda_function_arn.clone(),
            events,
            prefix: None,
            suffix: None,
            creator: None,
        };
        let filter_rules = c
            .filter
            .as_ref()
            .and_then(|f| f.key.as_ref())
            .and_then(|k| k.filter_rules.as_ref());
        for fr in filter_rules.into_iter().flatten() {
            let name = fr.name.as_ref().map(|n| n.as_str().to_ascii_lowercase());
            let value = fr.value.clone();
            match name.as_deref() {
                Some("prefix") if rule.prefix.is_none() => rule.prefix = value,
                Some("suffix") if rule.suffix.is_none() => rule.suffix = value,
                _ => {
                    return Err(s3_error!(
                        InvalidArgument,
                        "filter rule name must be either prefix or suffix, once each"
                    ));
                }
            }
        }
        rules.push(rule);
    }
    Ok(rules)
}

pub(crate) fn render(rules: Vec<Rule>) -> NotificationConfiguration {
    let configs = rules
        .into_iter()
        .map(|r| {
            let mut filter_rules = Vec::new();
            for (name, value) in [("prefix", r.prefix), ("suffix", r.suffix)] {
                if let Some(v) = value {
                    filter_rules.push(FilterRule {
                        name: Some(FilterRuleName::from(name.to_string())),
                        value: Some(v),
                    });
                }
            }
            LambdaFunctionConfiguration {
                id: r.id,
                lambda_function_arn: r.function_arn,
                events: r.events.into_iter().map(Event::from).collect(),
                filter: (!filter_rules.is_empty()).then_some(NotificationConfigurationFilter {
                    key: Some(S3KeyFilter {
                        filter_rules: Some(filter_rules),
                    }),
                }),
            }
        })
        .collect();
    NotificationConfiguration {
        lambda_function_configurations: Some(configs),
        ..Default::default()
    }
}

impl NimbusS3 {
    pub(super) async fn put_notifications(
        &self,
        req: S3Request<PutBucketNotificationConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketNotificationConfigurationOutput>> {
        let who = principal(&req);
        let input = req.input;
        self.require_bucket(&input.bucket).await?;
        let rules = parse_rules(&input.notification_configuration)?;
        for rule in &rules {
            let Some((name, _)) = rule.target() else {
                return Err(s3_error!(
                    InvalidArgument,
                    "Unable to validate the following destination configurations: {}",
                    rule.function_arn
                ));
            };
            // In a cluster, a function just created through another node.
            self.state.control.registry().catch_up(&name, None).await;
            if self.state.control.registry().get(&name).is_none() {
                return Err(s3_error!(
                    InvalidArgument,
                    "Unable to validate the following destination configurations: function {name} does not exist"
                ));
            }
            let (name, qualifier) = rule.target().expect("checked above");
            let arn = super::super::principal::arns(&self.state)
                .function(name.as_str(), qualifier.as_deref());
            super::auth::check(&self.state, &who, "lambda:InvokeFunction", &arn)?;
        }
        let rules: Vec<Rule> = rules
            .into_iter()
            .map(|r| Rule {
                creator: who.function().map(str::to_string),
                ..r
            })
            .collect();
        let json =
            (!rules.is_empty()).then(|| serde_json::to_string(&rules).expect("rules serialize"));
        self.state
            .objects
            .set_notifications(&input.bucket, json)
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(PutBucketNotificationConfigurationOutput {}))
    }

    pub(super) async fn get_notifications(
        &self,
        req: S3Request<GetBucketNotificationConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketNotificationConfigurationOutput>> {
        let bucket = self.require_bucket(&req.input.bucket).await?;
        let config = render(stored_rules(&bucket));
        Ok(S3Response::new(GetBucketNotificationConfigurationOutput {
            lambda_function_configurations: config.lambda_function_configurations,
            ..Default::default()
        }))
    }

    /// The notifications a write of `event` on `bucket`/`key` triggers, to
    /// store with it (see [`nimbus_engine::sources::object_events`]).
    pub(super) fn notifications(
        &self,
        writer: &crate::Principal,
        bucket: &BucketInfo,
        event: &str,
        key: &str,
        region: Option<&str>,
    ) -> Vec<Notification> {
        self.state.object_events.notifications(
            writer.function(),
            writer.sent_trace(),
            bucket,
            event,
            key,
            region,
        )
    }

    /// After a write committed `notifications`: the relay delivers them now.
    pub(super) fn notified(&self, notifications: &[Notification]) {
        if !notifications.is_empty() {
            self.state.object_events.wake();
        }
    }
}
