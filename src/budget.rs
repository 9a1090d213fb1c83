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
        Arc::clone(&self.permits)
            .acquire_many_owned(self.units(bytes))
            .await
    }

    /// Makes `permit` hold `bytes` (an item's actual size, known only after it was reserved
    /// by an estimate): gives the surplus back at once, and takes the shortfall only if it
    /// is free now. It never waits: holders that wait for more while holding a share could
    /// block each other, so an estimate that was too low overshoots the budget by its miss
    /// until the item is released (the next estimate learns from this one).
    pub fn resize(&self, permit: &mut OwnedSemaphorePermit, bytes: u64) {
        let want = self.units(bytes) as usize;
        let held = permit.num_permits();
        if held > want {
            drop(permit.split(held - want));
        } else if held < want {
            let short = u32::try_from(want - held).unwrap_or(u32::MAX);
            if let Ok(more) = Arc::clone(&self.permits).try_acquire_many_owned(short) {
                permit.merge(more);
            }
        }
    }

    /// Units of `bytes`, at least one and at most the whole budget.
    fn units(&self, bytes: u64) -> u32 {
        u32::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total)
    }

    /// Bytes free in the budget now (for tests and gauges).
    pub fn available_bytes(&self) -> u64 {
        self.permits.available_permits() as u64 * UNIT
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

    #[tokio::test]
    async fn resize_returns_surplus_and_takes_only_free_shortfall() {
        let budget = ByteBudget::new(8 * UNIT);
        let mut estimate = budget.acquire(6 * UNIT).await.expect("fits");
        budget.resize(&mut estimate, 2 * UNIT);
        assert_eq!(estimate.num_permits(), 2, "the surplus goes back");
        assert_eq!(budget.available_bytes(), 6 * UNIT);
        budget.resize(&mut estimate, 5 * UNIT);
        assert_eq!(estimate.num_permits(), 5, "a free shortfall is taken");
        let other = budget.acquire(3 * UNIT).await.expect("the rest");
        budget.resize(&mut estimate, 7 * UNIT);
        assert_eq!(
            estimate.num_permits(),
            5,
            "a shortfall that is not free is not waited for"
        );
        drop((estimate, other));
        assert_eq!(budget.available_bytes(), 8 * UNIT, "all of it comes back");
    }
}
