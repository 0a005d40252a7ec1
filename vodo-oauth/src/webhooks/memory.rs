//! [`MemoryOutbox`]: the outbox in memory, for tests and embedding. Not
//! durable: what is pending is lost with the process.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use vodo_core::Timestamp;

use super::outbox::{Attempt, Claimed, DeliveryStatus, Endpoint, Message, Outbox};
use crate::{Error, Result};

#[derive(Debug)]
struct Delivery {
    id: i64,
    message_id: String,
    endpoint_id: String,
    status: DeliveryStatus,
    attempts: u32,
    next: Timestamp,
}

#[derive(Debug, Default)]
struct Inner {
    endpoints: HashMap<String, Endpoint>,
    messages: HashMap<String, Message>,
    deliveries: Vec<Delivery>,
    log: Vec<Attempt>,
}

/// The outbox in memory.
#[derive(Debug, Default)]
pub struct MemoryOutbox {
    inner: Mutex<Inner>,
}

impl MemoryOutbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Outbox for MemoryOutbox {
    fn put_endpoint(&self, endpoint: &Endpoint) -> Result<()> {
        self.inner
            .lock()
            .endpoints
            .insert(endpoint.id.clone(), endpoint.clone());
        Ok(())
    }

    fn endpoint(&self, id: &str) -> Result<Option<Endpoint>> {
        Ok(self.inner.lock().endpoints.get(id).cloned())
    }

    fn endpoints(&self) -> Result<Vec<Endpoint>> {
        let mut out: Vec<Endpoint> = self.inner.lock().endpoints.values().cloned().collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    fn enqueue(&self, message: &Message, endpoint_ids: &[String]) -> Result<()> {
        if message.id.is_empty() || message.id.contains('.') {
            return Err(Error::Invalid(
                "a message id is not empty and has no `.`".into(),
            ));
        }
        let mut inner = self.inner.lock();
        if inner.messages.contains_key(&message.id) {
            return Err(Error::Invalid(format!(
                "message `{}` exists already",
                message.id
            )));
        }
        inner.messages.insert(message.id.clone(), message.clone());
        for endpoint in endpoint_ids {
            let id = inner.deliveries.len() as i64 + 1;
            inner.deliveries.push(Delivery {
                id,
                message_id: message.id.clone(),
                endpoint_id: endpoint.clone(),
                status: DeliveryStatus::Pending,
                attempts: 0,
                next: message.created_at,
            });
        }
        Ok(())
    }

    fn claim_due(&self, now: Timestamp, lease: Duration, limit: usize) -> Result<Vec<Claimed>> {
        let mut inner = self.inner.lock();
        let mut due: Vec<usize> = (0..inner.deliveries.len())
            .filter(|i| {
                let d = &inner.deliveries[*i];
                d.status == DeliveryStatus::Pending && d.next <= now
            })
            .collect();
        due.sort_by_key(|i| (inner.deliveries[*i].next, inner.deliveries[*i].id));
        due.truncate(limit);
        let mut out = Vec::new();
        for i in due {
            inner.deliveries[i].next = now.plus(lease);
            let d = &inner.deliveries[i];
            let (Some(m), Some(e)) = (
                inner.messages.get(&d.message_id),
                inner.endpoints.get(&d.endpoint_id),
            ) else {
                continue;
            };
            out.push(Claimed {
                delivery_id: d.id,
                message_id: m.id.clone(),
                endpoint: e.clone(),
                body: m.body.clone(),
                created_at: m.created_at,
                attempts: d.attempts,
            });
        }
        Ok(out)
    }

    fn record(
        &self,
        attempt: &Attempt,
        delivered: bool,
        next: Option<Timestamp>,
        attempts: u32,
    ) -> Result<()> {
        let mut inner = self.inner.lock();
        inner.log.push(attempt.clone());
        let d = inner
            .deliveries
            .iter_mut()
            .find(|d| d.id == attempt.delivery_id)
            .ok_or_else(|| Error::NotFound(format!("no delivery {}", attempt.delivery_id)))?;
        d.attempts = attempts;
        d.status = match (delivered, next) {
            (true, _) => DeliveryStatus::Delivered,
            (false, Some(_)) => DeliveryStatus::Pending,
            (false, None) => DeliveryStatus::Failed,
        };
        d.next = next.unwrap_or(attempt.at);
        Ok(())
    }

    fn set_failing(&self, endpoint_id: &str, since: Option<Timestamp>) -> Result<()> {
        if let Some(e) = self.inner.lock().endpoints.get_mut(endpoint_id) {
            e.failing_since = since.map(|t| e.failing_since.unwrap_or(t));
        }
        Ok(())
    }

    fn disable(&self, endpoint_id: &str, reason: &str) -> Result<()> {
        let mut inner = self.inner.lock();
        if let Some(e) = inner.endpoints.get_mut(endpoint_id) {
            e.enabled = false;
            e.disabled_reason = Some(reason.to_owned());
        }
        for d in inner
            .deliveries
            .iter_mut()
            .filter(|d| d.endpoint_id == endpoint_id && d.status == DeliveryStatus::Pending)
        {
            d.status = DeliveryStatus::Failed;
        }
        Ok(())
    }

    fn redeliver(&self, message_id: &str, endpoint_id: &str, now: Timestamp) -> Result<()> {
        let mut inner = self.inner.lock();
        if !inner.messages.contains_key(message_id) {
            return Err(Error::NotFound(format!(
                "no webhook message `{message_id}`"
            )));
        }
        let id = inner.deliveries.len() as i64 + 1;
        inner.deliveries.push(Delivery {
            id,
            message_id: message_id.to_owned(),
            endpoint_id: endpoint_id.to_owned(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            next: now,
        });
        Ok(())
    }

    fn attempts(&self, message_id: &str) -> Result<Vec<Attempt>> {
        Ok(self
            .inner
            .lock()
            .log
            .iter()
            .filter(|a| a.message_id == message_id)
            .cloned()
            .collect())
    }

    fn deliveries(&self, message_id: &str) -> Result<Vec<(String, DeliveryStatus, u32)>> {
        Ok(self
            .inner
            .lock()
            .deliveries
            .iter()
            .filter(|d| d.message_id == message_id)
            .map(|d| (d.endpoint_id.clone(), d.status, d.attempts))
            .collect())
    }

    fn message(&self, id: &str) -> Result<Option<Message>> {
        Ok(self.inner.lock().messages.get(id).cloned())
    }

    fn messages(&self, offset: usize, limit: usize) -> Result<Vec<Message>> {
        let mut all: Vec<Message> = self.inner.lock().messages.values().cloned().collect();
        all.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        Ok(all.into_iter().skip(offset).take(limit).collect())
    }

    fn pending(&self) -> Result<usize> {
        Ok(self
            .inner
            .lock()
            .deliveries
            .iter()
            .filter(|d| d.status == DeliveryStatus::Pending)
            .count())
    }
}
