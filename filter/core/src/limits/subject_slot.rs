//! Which of a fixed number of shared-data slots a subject's state lives in: FNV-1a of its
//! kind code and id, so every worker finds the same slot, and many subjects share a few
//! bounded entries (shared data never frees one).

use keysync_contract::subject::Subject;

/// The slot of `subject` among `slots`.
pub fn slot_of(subject: &Subject, slots: u16) -> u16 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in std::iter::once(subject.code()).chain(subject.id().0) {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    u16::try_from(hash % u32::from(slots.max(1))).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keysync_contract::id::Id;

    #[test]
    fn the_slot_is_fnv1a_of_the_kind_code_and_the_id() {
        // Pinned: counters already in shared data must stay where workers look.
        assert_eq!(slot_of(&Subject::Org(Id([0; 16])), 1024), 0x28c);
        let org = Subject::Org(Id([7; 16]));
        let key = Subject::Key(Id([7; 16]));
        assert_ne!(slot_of(&org, 1024), slot_of(&key, 1024), "the kind counts");
        assert!((0..=255u8).all(|n| slot_of(&Subject::Key(Id([n; 16])), 512) < 512));
    }
}
