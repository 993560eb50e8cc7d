//! Whether usage metering is on, and the Envoy process's instance id: written by the
//! sync service (`keysync.u.meta`), read by every worker on its tick. The id outlives
//! VM reloads and a stand-by taking over, so an Envoy's counters stay one instance's.

use crate::host::{SharedData, WriteError};

/// Shared-data key of the metering settings.
pub const META_ENTRY: &str = "keysync.u.meta";

const FORMAT_VERSION: u8 = 1;

/// Whether metering is on, and the process's instance id.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Meta {
    pub enabled: bool,
    pub instance_id: [u8; 16],
}

impl Meta {
    pub fn read<S: SharedData>(data: &S) -> Option<Meta> {
        let value = data.get(META_ENTRY).value?;
        match value.split_first() {
            Some((&FORMAT_VERSION, rest)) if rest.len() == 17 => Some(Meta {
                enabled: rest.first() == Some(&1),
                instance_id: rest.get(1..17)?.try_into().ok()?,
            }),
            _ => None,
        }
    }

    pub fn write<S: SharedData>(&self, data: &S) -> Result<(), WriteError> {
        let mut out = vec![FORMAT_VERSION, u8::from(self.enabled)];
        out.extend_from_slice(&self.instance_id);
        data.set(META_ENTRY, &out, 0)
    }
}

/// Whether a worker counts usage, as the sync service said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metering {
    /// Not said yet (the sync service is starting): count, and keep the counts in the
    /// tally (bounded) until the slots exist.
    Unknown,
    On,
    Off,
}

impl Metering {
    /// What the settings in shared data (if any) say.
    pub fn of(meta: Option<Meta>) -> Metering {
        match meta {
            None => Metering::Unknown,
            Some(meta) if meta.enabled => Metering::On,
            Some(_) => Metering::Off,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake_shared_data::FakeSharedData;

    #[test]
    fn meta_round_trips() {
        let data = FakeSharedData::default();
        assert_eq!(Meta::read(&data), None);
        let meta = Meta {
            enabled: true,
            instance_id: [7; 16],
        };
        meta.write(&data).unwrap();
        assert_eq!(Meta::read(&data), Some(meta));
        assert_eq!(Metering::of(Some(meta)), Metering::On);
        assert_eq!(
            Metering::of(Some(Meta {
                enabled: false,
                ..meta
            })),
            Metering::Off
        );
        assert_eq!(Metering::of(None), Metering::Unknown);
    }
}
