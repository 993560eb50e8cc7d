//! Label values of keysync's metrics in the lower-case spelling Prometheus users expect
//! (prometheus-client's derive would write the variant names as they are), for the label
//! enums each subsystem's metrics declare.

/// Implements `EncodeLabelValue` for an enum, one label value per variant:
/// `label_values!(LoadKind { Full => "full", Incremental => "incremental" });`
macro_rules! label_values {
    ($type:ty { $($variant:ident => $value:literal),+ $(,)? }) => {
        impl prometheus_client::encoding::EncodeLabelValue for $type {
            fn encode(
                &self,
                encoder: &mut prometheus_client::encoding::LabelValueEncoder,
            ) -> Result<(), std::fmt::Error> {
                let value = match self {
                    $(Self::$variant => $value),+
                };
                prometheus_client::encoding::EncodeLabelValue::encode(&value, encoder)
            }
        }
    };
}

pub(crate) use label_values;
