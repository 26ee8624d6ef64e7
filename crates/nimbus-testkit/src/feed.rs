//! The change feed of a kit engine: [`nimbus_store::LocalChangeFeed`]'s
//! in-process broadcast, plus the one notice a test cannot publish through
//! the contract, [`ChangeNotice::Resync`] (what a cluster backend announces
//! after losing its connection), so the followers' reload can be tested.

use async_trait::async_trait;
use nimbus_store::{
    Change, ChangeFeed, ChangeKind, ChangeNotice, ChangeStream, StoreError, check_change_key,
};
use tokio::sync::broadcast;

pub struct KitChangeFeed {
    tx: broadcast::Sender<ChangeNotice>,
}

impl Default for KitChangeFeed {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(1024).0,
        }
    }
}

impl KitChangeFeed {
    /// Tells every subscriber that changes may have been missed.
    pub fn resync(&self) {
        let _ = self.tx.send(ChangeNotice::Resync);
    }
}

#[async_trait]
impl ChangeFeed for KitChangeFeed {
    async fn publish(&self, kind: ChangeKind, key: &str) -> Result<(), StoreError> {
        check_change_key(key)?;
        let _ = self.tx.send(ChangeNotice::Changed(Change {
            kind,
            key: key.to_string(),
        }));
        Ok(())
    }

    fn subscribe(&self) -> ChangeStream {
        ChangeStream::new(&self.tx)
    }
}
