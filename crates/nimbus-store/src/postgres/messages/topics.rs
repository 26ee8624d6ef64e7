//! Topics and their subscriptions.
//!
//! Why creates insert first and read after: `ON CONFLICT DO NOTHING` makes
//! concurrent creates of one name (on any node) store one row, and the
//! losers then read the winner's, so every caller is answered with the one
//! stored record. The read is a statement of its own: the insert's snapshot
//! predates the winner's commit.

use std::collections::BTreeMap;

use async_trait::async_trait;
use tokio_postgres::Row;
use tokio_postgres::types::Json;

use super::{
    PgMessages, attributes_at, insert_announced, is_missing_parent, split_update, write_announced,
};
use crate::messages::{SubscriptionRecord, TopicRecord, Topics};
use crate::postgres::is_unique_violation;
use crate::{ChangeKind, StoreError};

const TOPIC_COLUMNS: &str = "name, created_ms, attributes";
const SUBSCRIPTION_COLUMNS: &str = "arn, topic, protocol, endpoint, attributes, created_ms";

fn topic_row(r: &Row) -> Result<TopicRecord, StoreError> {
    Ok(TopicRecord {
        name: r.try_get(0)?,
        created_ms: r.try_get(1)?,
        attributes: attributes_at(r, 2)?,
    })
}

fn subscription_row(r: &Row) -> Result<SubscriptionRecord, StoreError> {
    Ok(SubscriptionRecord {
        arn: r.try_get(0)?,
        topic: r.try_get(1)?,
        protocol: r.try_get(2)?,
        endpoint: r.try_get(3)?,
        attributes: attributes_at(r, 4)?,
        created_ms: r.try_get(5)?,
    })
}

impl PgMessages {
    async fn subscription_of(
        &self,
        s: &SubscriptionRecord,
    ) -> Result<Option<SubscriptionRecord>, StoreError> {
        let client = self.pg.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions
                 WHERE topic = $1 AND protocol = $2 AND endpoint = $3"
            ))
            .await?;
        client
            .query_opt(&statement, &[&s.topic, &s.protocol, &s.endpoint])
            .await?
            .as_ref()
            .map(subscription_row)
            .transpose()
    }
}

#[async_trait]
impl Topics for PgMessages {
    async fn create_topic(&self, t: &TopicRecord) -> Result<TopicRecord, StoreError> {
        // A concurrent delete may remove the topic between the insert that
        // lost and the read of the winner: then the next attempt wins.
        loop {
            let stored = insert_announced(
                &self.pg,
                (ChangeKind::Topic, &t.name),
                "INSERT INTO topics (name, created_ms, attributes) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO NOTHING RETURNING name",
                &[&t.name, &t.created_ms, &Json(&t.attributes)],
                |_| None,
            )
            .await?;
            if stored {
                return Ok(t.clone());
            }
            if let Some(existing) = self.get_topic(&t.name).await? {
                return Ok(existing);
            }
        }
    }

    async fn get_topic(&self, name: &str) -> Result<Option<TopicRecord>, StoreError> {
        let client = self.pg.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {TOPIC_COLUMNS} FROM topics WHERE name = $1"
            ))
            .await?;
        client
            .query_opt(&statement, &[&name])
            .await?
            .as_ref()
            .map(topic_row)
            .transpose()
    }

    async fn list_topics(&self) -> Result<Vec<TopicRecord>, StoreError> {
        let client = self.pg.client().await?;
        let statement = client
            .prepare_cached(&format!("SELECT {TOPIC_COLUMNS} FROM topics ORDER BY name"))
            .await?;
        client
            .query(&statement, &[])
            .await?
            .iter()
            .map(topic_row)
            .collect()
    }

    async fn set_topic_attributes(
        &self,
        name: &str,
        attributes: BTreeMap<String, String>,
    ) -> Result<bool, StoreError> {
        // An empty value is a value (SNS's DisplayName may be "").
        write_announced(
            &self.pg,
            ChangeKind::Topic,
            "UPDATE topics SET attributes = attributes || $2::jsonb WHERE name = $1 RETURNING name",
            &[&name, &Json(&attributes)],
        )
        .await
    }

    async fn delete_topic(&self, name: &str) -> Result<bool, StoreError> {
        // The subscriptions go with it (ON DELETE CASCADE).
        write_announced(
            &self.pg,
            ChangeKind::Topic,
            "DELETE FROM topics WHERE name = $1 RETURNING name",
            &[&name],
        )
        .await
    }

    async fn subscribe(&self, s: &SubscriptionRecord) -> Result<SubscriptionRecord, StoreError> {
        // As for topics: the insert that lost reads the winner, again if an
        // unsubscribe came in between.
        loop {
            let stored = insert_announced(
                &self.pg,
                (ChangeKind::Topic, &s.topic),
                "INSERT INTO subscriptions (arn, topic, protocol, endpoint, attributes, created_ms)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (topic, protocol, endpoint) DO NOTHING RETURNING arn",
                &[
                    &s.arn,
                    &s.topic,
                    &s.protocol,
                    &s.endpoint,
                    &Json(&s.attributes),
                    &s.created_ms,
                ],
                |e| {
                    if is_missing_parent(e) {
                        Some(StoreError::NotFound(format!("topic {}", s.topic)))
                    } else if is_unique_violation(e) {
                        // Another subscription already has this ARN.
                        Some(StoreError::Conflict(format!("subscription {}", s.arn)))
                    } else {
                        None
                    }
                },
            )
            .await?;
            if stored {
                return Ok(s.clone());
            }
            if let Some(existing) = self.subscription_of(s).await? {
                return Ok(existing);
            }
        }
    }

    async fn unsubscribe(&self, arn: &str) -> Result<bool, StoreError> {
        write_announced(
            &self.pg,
            ChangeKind::Topic,
            "DELETE FROM subscriptions WHERE arn = $1 RETURNING topic",
            &[&arn],
        )
        .await
    }

    async fn get_subscription(&self, arn: &str) -> Result<Option<SubscriptionRecord>, StoreError> {
        let client = self.pg.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE arn = $1"
            ))
            .await?;
        client
            .query_opt(&statement, &[&arn])
            .await?
            .as_ref()
            .map(subscription_row)
            .transpose()
    }

    async fn list_subscriptions(
        &self,
        topic: Option<&str>,
    ) -> Result<Vec<SubscriptionRecord>, StoreError> {
        let client = self.pg.client().await?;
        // Two statements, so each has its index (one plan for both would
        // scan every subscription for one topic's).
        let rows = match topic {
            Some(topic) => {
                let statement = client
                    .prepare_cached(&format!(
                        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions
                         WHERE topic = $1 ORDER BY created_ms, arn"
                    ))
                    .await?;
                client.query(&statement, &[&topic]).await?
            }
            None => {
                let statement = client
                    .prepare_cached(&format!(
                        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions ORDER BY created_ms, arn"
                    ))
                    .await?;
                client.query(&statement, &[]).await?
            }
        };
        rows.iter().map(subscription_row).collect()
    }

    async fn set_subscription_attributes(
        &self,
        arn: &str,
        attributes: BTreeMap<String, String>,
    ) -> Result<bool, StoreError> {
        // An empty value removes the attribute (clearing a FilterPolicy).
        let (set, removed) = split_update(attributes, |_, v| v.is_empty());
        write_announced(
            &self.pg,
            ChangeKind::Topic,
            "UPDATE subscriptions SET attributes = (attributes || $2::jsonb) - $3::text[]
             WHERE arn = $1 RETURNING topic",
            &[&arn, &Json(&set), &removed],
        )
        .await
    }
}
