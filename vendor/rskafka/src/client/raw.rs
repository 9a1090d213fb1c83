//! pipeline patch: raw requests over this client's authenticated broker connections.
//!
//! rskafka has no consumer-group API. A caller that encodes those messages itself (pipeline
//! uses the `kafka-protocol` codec) sends them here, over a connection that went through the
//! same TLS and SASL set-up as produce and fetch.

use super::{Client, error::Error, error::Result};
use crate::connection::BrokerConnection;
use crate::messenger::RequestError;

/// A dedicated connection to one broker (not shared with produce, fetch or metadata, so a
/// request the broker holds, like JoinGroup, delays nothing else).
#[derive(Debug, Clone)]
pub struct RawConnection {
    connection: BrokerConnection,
    broker: Option<i32>,
}

impl RawConnection {
    /// The broker id this connection was opened to (`None`: any broker).
    pub fn broker(&self) -> Option<i32> {
        self.broker
    }

    /// Sends an encoded request body and returns the response body (after its header).
    ///
    /// # Errors
    /// The connection failed (it is then poisoned: open a new one).
    pub async fn request(
        &self,
        api_key: i16,
        api_version: i16,
        request_header_version: i16,
        response_header_version: i16,
        body: &[u8],
    ) -> std::result::Result<Vec<u8>, RequestError> {
        self.connection
            .request_raw(
                api_key,
                api_version,
                request_header_version,
                response_header_version,
                body,
            )
            .await
    }
}

impl Client {
    /// Opens a new connection to broker `broker` (as the cluster metadata names it; the
    /// metadata is refreshed once when the id is unknown), or to any broker for `None`.
    ///
    /// # Errors
    /// No broker could be reached, or the id is not in the cluster.
    pub async fn raw_connection(&self, broker: Option<i32>) -> Result<RawConnection> {
        let connection = match broker {
            None => self.brokers.connect_arbitrary().await?,
            Some(id) => match self.brokers.connect(id).await? {
                Some(c) => c,
                None => {
                    self.brokers.refresh_metadata().await?;
                    self.brokers.connect(id).await?.ok_or_else(|| {
                        Error::InvalidResponse(format!("broker {id} is not in the metadata"))
                    })?
                }
            },
        };
        Ok(RawConnection { connection, broker })
    }
}
