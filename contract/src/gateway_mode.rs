//! How a gateway enforces the contract, as it reports itself to keysync
//! (`GatewayState.mode`) and as `keysync gateways` and `GET /v1/gateways` show it: the
//! wasm filter, the native (dynamic module) filter, or keysync's own ext_authz service.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GatewayMode {
    Wasm,
    Native,
    ExtAuthz,
}

impl GatewayMode {
    pub const ALL: [GatewayMode; 3] = [
        GatewayMode::Wasm,
        GatewayMode::Native,
        GatewayMode::ExtAuthz,
    ];

    /// The wire, database and display name.
    pub fn name(self) -> &'static str {
        match self {
            GatewayMode::Wasm => "wasm",
            GatewayMode::Native => "native",
            GatewayMode::ExtAuthz => "ext_authz",
        }
    }

    /// The mode named `name`; `None` for any other string.
    pub fn parse(name: &str) -> Option<GatewayMode> {
        GatewayMode::ALL
            .into_iter()
            .find(|mode| mode.name() == name)
    }
}

impl fmt::Display for GatewayMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_reads_back_from_its_name_and_nothing_else_does() {
        for mode in GatewayMode::ALL {
            assert_eq!(GatewayMode::parse(mode.name()), Some(mode));
        }
        assert_eq!(GatewayMode::parse("Wasm"), None);
        assert_eq!(GatewayMode::parse(""), None);
    }
}
