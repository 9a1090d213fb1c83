//! The group leader's assignor: sticky and balanced.
//!
//! Every member keeps the partitions it owned (as its subscription reported them), up to its
//! share; the rest go to the members with the fewest. Shares differ by at most one partition.
//! Deterministic: members are taken in member-id order.

use std::collections::{BTreeMap, BTreeSet};

/// Partitions `0..partitions` among `members` (member id → partitions it owns now).
/// Returns member id → assigned partitions (sorted); every partition exactly once, every
/// member present (possibly with none).
pub fn assign(partitions: i32, members: &BTreeMap<String, Vec<i32>>) -> BTreeMap<String, Vec<i32>> {
    let mut out: BTreeMap<String, Vec<i32>> =
        members.keys().map(|m| (m.clone(), Vec::new())).collect();
    if members.is_empty() || partitions <= 0 {
        return out;
    }
    let n = usize::try_from(partitions).unwrap_or_default();
    let m = members.len();
    let min = n / m;
    let extra = n % m;
    let max = if extra == 0 { min } else { min + 1 };

    // 1. Keep owned partitions, up to the larger share, first claim wins.
    let mut claimed = BTreeSet::new();
    for (member, owned) in members {
        let mut owned: Vec<i32> = owned.clone();
        owned.sort_unstable();
        owned.dedup();
        let kept = out.entry(member.clone()).or_default();
        for p in owned {
            if (0..partitions).contains(&p) && kept.len() < max && claimed.insert(p) {
                kept.push(p);
            }
        }
    }
    // 2. At most `extra` members may hold the larger share: the others give one back.
    if max > min {
        let mut at_max = 0;
        for kept in out.values_mut() {
            if kept.len() == max {
                at_max += 1;
                if at_max > extra
                    && let Some(p) = kept.pop()
                {
                    claimed.remove(&p);
                }
            }
        }
    }
    // 3. The unclaimed partitions go to the member with the fewest (ties: member id).
    for p in (0..partitions).filter(|p| !claimed.contains(p)) {
        if let Some((_, kept)) = out
            .iter_mut()
            .min_by_key(|(id, kept)| (kept.len(), (*id).clone()))
        {
            kept.push(p);
        }
    }
    for kept in out.values_mut() {
        kept.sort_unstable();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(owned: &[(&str, &[i32])]) -> BTreeMap<String, Vec<i32>> {
        owned
            .iter()
            .map(|(m, p)| ((*m).to_string(), p.to_vec()))
            .collect()
    }

    fn check_exact(partitions: i32, out: &BTreeMap<String, Vec<i32>>) {
        let mut all: Vec<i32> = out.values().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..partitions).collect::<Vec<_>>(), "{out:?}");
        let sizes: Vec<usize> = out.values().map(Vec::len).collect();
        let (lo, hi) = (sizes.iter().min(), sizes.iter().max());
        assert!(hi.zip(lo).is_some_and(|(h, l)| h - l <= 1), "{out:?}");
    }

    #[test]
    fn fresh_group_is_balanced() {
        let out = assign(6, &members(&[("a", &[]), ("b", &[]), ("c", &[])]));
        check_exact(6, &out);
        assert_eq!(out["a"], vec![0, 3]);
        let out = assign(7, &members(&[("a", &[]), ("b", &[])]));
        check_exact(7, &out);
        let out = assign(2, &members(&[("a", &[]), ("b", &[]), ("c", &[])]));
        check_exact(2, &out);
    }

    #[test]
    fn a_member_leaving_moves_only_its_partitions() {
        let out = assign(6, &members(&[("a", &[0, 1]), ("c", &[4, 5])]));
        check_exact(6, &out);
        assert!(out["a"].starts_with(&[0, 1]) || out["a"] == vec![0, 1, 2]);
        assert!(out["c"].contains(&4) && out["c"].contains(&5));
    }

    #[test]
    fn a_member_joining_takes_from_the_largest() {
        let out = assign(
            6,
            &members(&[("a", &[0, 1, 2]), ("b", &[3, 4, 5]), ("c", &[])]),
        );
        check_exact(6, &out);
        assert_eq!(out["c"].len(), 2);
        // a and b each keep two of their three.
        assert_eq!(out["a"].iter().filter(|p| [0, 1, 2].contains(p)).count(), 2);
        assert_eq!(out["b"].iter().filter(|p| [3, 4, 5].contains(p)).count(), 2);
    }

    #[test]
    fn conflicting_claims_and_unknown_partitions() {
        let out = assign(4, &members(&[("a", &[0, 1, 9]), ("b", &[1, 2])]));
        check_exact(4, &out);
        assert_eq!(out["a"], vec![0, 1]);
        assert_eq!(out["b"], vec![2, 3]);
    }

    #[test]
    fn uneven_shares_respect_the_limit() {
        // 7 over 3: shares 3,2,2; everyone claims 3.
        let out = assign(
            7,
            &members(&[("a", &[0, 1, 2]), ("b", &[3, 4, 5]), ("c", &[6])]),
        );
        check_exact(7, &out);
        assert_eq!(out["a"], vec![0, 1, 2]);
    }
}
