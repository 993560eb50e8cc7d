//! One gateway's report of itself (`ReportUsageRequest.gateway`), checked and named as
//! the fleet keeps it.

use std::net::SocketAddr;

use keysync_contract::gateway_mode::GatewayMode;
use keysync_proto::v1::GatewayState;
use uuid::Uuid;

use crate::key_set::position::Position;

/// Longest host name and version kept (DNS names are at most 253 characters).
const MAX_HOST_CHARS: usize = 253;
const MAX_VERSION_CHARS: usize = 64;

/// A gateway seen: who it is and the revision it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    pub instance_id: Uuid,
    pub host: String,
    pub mode: GatewayMode,
    pub version: String,
    /// In this keysync's revision history; 0 when the gateway's epoch is another.
    pub revision: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidSighting {
    #[error("instance_id is {0} bytes, expected 16")]
    InstanceId(usize),
    #[error("unknown gateway mode '{0}' (wasm, native or ext_authz)")]
    Mode(String),
}

impl Sighting {
    /// The gateway `state` reported by instance `instance_id`, from `peer`, read against
    /// `position`, the revision history of this keysync: a revision of another epoch
    /// says nothing about this one, so it counts as 0 (behind everything).
    pub fn from_report(
        instance_id: &[u8],
        state: &GatewayState,
        peer: Option<SocketAddr>,
        position: Position,
    ) -> Result<Sighting, InvalidSighting> {
        let instance_id = Uuid::from_slice(instance_id)
            .map_err(|_| InvalidSighting::InstanceId(instance_id.len()))?;
        let mode = GatewayMode::parse(&state.mode)
            .ok_or_else(|| InvalidSighting::Mode(bounded(&state.mode, 32)))?;
        let host = match state.host.trim() {
            "" => peer.map_or_else(|| "unknown".to_owned(), |peer| peer.ip().to_string()),
            host => bounded(host, MAX_HOST_CHARS),
        };
        let revision = if state.epoch == position.epoch {
            state.revision
        } else {
            0
        };
        Ok(Sighting {
            instance_id,
            host,
            mode,
            version: bounded(&state.version, MAX_VERSION_CHARS),
            revision,
        })
    }
}

/// `text` cut to `max` characters, without control characters (it goes in a table).
fn bounded(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const POSITION: Position = Position {
        epoch: 9,
        revision: 50,
    };

    fn state(mode: &str, host: &str, epoch: u64) -> GatewayState {
        GatewayState {
            mode: mode.into(),
            version: "0.1.0".into(),
            host: host.into(),
            revision: 42,
            epoch,
        }
    }

    #[test]
    fn a_report_names_its_gateway_by_host_or_else_by_address() {
        let peer: SocketAddr = "10.0.0.7:51234".parse().unwrap();
        let named = Sighting::from_report(
            &[1; 16],
            &state("native", "edge-1", 9),
            Some(peer),
            POSITION,
        )
        .unwrap();
        assert_eq!(named.host, "edge-1");
        assert_eq!(named.mode, GatewayMode::Native);
        assert_eq!(named.revision, 42);
        assert_eq!(named.instance_id, Uuid::from_bytes([1; 16]));
        let unnamed =
            Sighting::from_report(&[1; 16], &state("wasm", " ", 9), Some(peer), POSITION).unwrap();
        assert_eq!(unnamed.host, "10.0.0.7");
    }

    #[test]
    fn a_revision_of_another_history_counts_as_none() {
        let sighting =
            Sighting::from_report(&[1; 16], &state("wasm", "h", 8), None, POSITION).unwrap();
        assert_eq!(sighting.revision, 0);
    }

    #[test]
    fn a_bad_mode_or_instance_is_refused() {
        assert_eq!(
            Sighting::from_report(&[1; 16], &state("lua", "h", 9), None, POSITION),
            Err(InvalidSighting::Mode("lua".into()))
        );
        assert_eq!(
            Sighting::from_report(&[1; 15], &state("wasm", "h", 9), None, POSITION),
            Err(InvalidSighting::InstanceId(15))
        );
    }
}
