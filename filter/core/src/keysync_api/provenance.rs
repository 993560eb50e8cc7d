//! Where keysync's data stands, as every answer and stream message says: the revision
//! history its revisions count in (the epoch) and how long ago keysync last confirmed it
//! against PostgreSQL. Data that is merely being served is not fresh data.

use keysync_proto::v1 as proto;

/// An age (`confirmed_age_ms`) meaning "never confirmed": keysync did not say, or the
/// store never held confirmed data.
pub const NEVER: u64 = u64::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Provenance {
    /// 0 when keysync did not say (then nothing is comparable with it).
    pub epoch: u64,
    /// [`NEVER`] when keysync did not say.
    pub confirmed_age_ms: u64,
}

impl Provenance {
    pub fn from_proto(provenance: Option<&proto::Provenance>) -> Provenance {
        match provenance {
            Some(p) => Provenance {
                epoch: p.epoch,
                confirmed_age_ms: p.confirmed_age_ms,
            },
            None => Provenance {
                epoch: 0,
                confirmed_age_ms: NEVER,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_without_provenance_is_never_confirmed() {
        let missing = Provenance::from_proto(None);
        assert_eq!((missing.epoch, missing.confirmed_age_ms), (0, NEVER));
        let given = proto::Provenance {
            epoch: 9,
            confirmed_age_ms: 120,
        };
        assert_eq!(
            Provenance::from_proto(Some(&given)),
            Provenance {
                epoch: 9,
                confirmed_age_ms: 120
            }
        );
    }
}
