//! Byte budgets between stages: how much data may wait in a buffer, counted in KiB permits of
//! a semaphore. A holder acquires its item's size before it hands the item on and releases
//! it by dropping the permit once the next stage is done with the item.

use std::sync::Arc;

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

/// Granularity of a budget.
const UNIT: u64 = 1024;

/// A byte budget shared by the producers of one buffer.
#[derive(Debug, Clone)]
pub struct ByteBudget {
    permits: Arc<Semaphore>,
    /// All permits: what an item larger than the whole budget takes.
    total: u32,
}

impl ByteBudget {
    /// A budget of `bytes` (at least one unit).
    pub fn new(bytes: u64) -> Self {
        let total = u32::try_from(bytes / UNIT).unwrap_or(u32::MAX).max(1);
        Self {
            permits: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// Waits until `bytes` fit, then holds them until the permit is dropped. An item larger
    /// than the whole budget takes all of it, so it still goes through, alone.
    ///
    /// # Errors
    /// Only if the semaphore was closed (it never is).
    pub async fn acquire(&self, bytes: u64) -> Result<OwnedSemaphorePermit, AcquireError> {
        let units = u32::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total);
        Arc::clone(&self.permits).acquire_many_owned(units).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn items_wait_for_room_and_a_huge_one_goes_alone() {
        let budget = ByteBudget::new(4 * UNIT);
        let a = budget.acquire(2 * UNIT).await.expect("fits");
        let b = budget.acquire(2 * UNIT - 1).await.expect("fits");
        let blocked = tokio::time::timeout(Duration::from_millis(50), budget.acquire(1)).await;
        assert!(blocked.is_err(), "a full budget makes the next item wait");
        drop(a);
        let c = budget.acquire(UNIT).await.expect("room again");
        drop((b, c));
        let huge = budget
            .acquire(100 * UNIT)
            .await
            .expect("larger than the budget");
        let blocked = tokio::time::timeout(Duration::from_millis(50), budget.acquire(1)).await;
        assert!(blocked.is_err(), "the huge item holds the whole budget");
        drop(huge);
        assert!(budget.acquire(4 * UNIT).await.is_ok());
    }
}
