//! The C types of the ABI (`envoy_dynamic_module_type_*` in `abi.h`), written for Rust.
//!
//! Structs are `#[repr(C)]` with the header's field order. Every C enum crosses the boundary
//! as a plain `u32` (a C enum is an `int`-sized integer; a Rust enum given a value it does not
//! list would be undefined behaviour), with the values the header's enumerators have in order
//! from 0, named here as constants.

use std::ffi::c_void;
use std::marker::PhantomData;

/// `envoy_dynamic_module_type_envoy_buffer`: bytes owned by Envoy. How long they live depends
/// on the call that produced them (see each caller); never freed by the module.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct EnvoyBuffer {
    pub(super) ptr: *const u8,
    pub(super) length: usize,
}

impl EnvoyBuffer {
    pub(super) const NULL: EnvoyBuffer = EnvoyBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };

    /// The bytes, `None` for a null buffer.
    ///
    /// # Safety
    /// The buffer must point to `length` readable bytes for the lifetime `'a` the caller
    /// chooses (each callback and hook states how long Envoy keeps them).
    pub(super) unsafe fn bytes<'a>(self) -> Option<&'a [u8]> {
        if self.ptr.is_null() {
            return None;
        }
        // SAFETY: non-null and, by the caller's promise, `length` bytes valid for `'a`.
        Some(unsafe { std::slice::from_raw_parts(self.ptr, self.length) })
    }
}

/// `envoy_dynamic_module_type_module_buffer`: bytes owned by the module, lent to Envoy for
/// the duration of one callback (Envoy copies what it keeps). A null `ptr` means "no value"
/// where a callback allows it (`http_set_header`: remove the header).
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct ModuleBuffer<'a> {
    ptr: *const u8,
    length: usize,
    _borrow: PhantomData<&'a [u8]>,
}

impl<'a> ModuleBuffer<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> ModuleBuffer<'a> {
        ModuleBuffer {
            ptr: bytes.as_ptr(),
            length: bytes.len(),
            _borrow: PhantomData,
        }
    }

    pub(super) const NULL: ModuleBuffer<'static> = ModuleBuffer {
        ptr: std::ptr::null(),
        length: 0,
        _borrow: PhantomData,
    };
}

/// `envoy_dynamic_module_type_module_http_header`: a header owned by the module, lent to
/// Envoy for one callback (`http_send_response`, callouts).
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct ModuleHttpHeader<'a> {
    key_ptr: *const u8,
    key_length: usize,
    value_ptr: *const u8,
    value_length: usize,
    _borrow: PhantomData<&'a [u8]>,
}

impl<'a> ModuleHttpHeader<'a> {
    pub(super) fn new(name: &'a [u8], value: &'a [u8]) -> ModuleHttpHeader<'a> {
        ModuleHttpHeader {
            key_ptr: name.as_ptr(),
            key_length: name.len(),
            value_ptr: value.as_ptr(),
            value_length: value.len(),
            _borrow: PhantomData,
        }
    }
}

/// Request headers in the ABI's layout, borrowing `headers` (kept alive by the caller for
/// the call that lends them to Envoy).
pub(super) fn module_headers<'a>(headers: &[(&'a str, &'a [u8])]) -> Vec<ModuleHttpHeader<'a>> {
    headers
        .iter()
        .map(|(name, value)| ModuleHttpHeader::new(name.as_bytes(), value))
        .collect()
}

/// `envoy_dynamic_module_type_envoy_http_header`: a header owned by Envoy (callout and stream
/// responses), valid until the end of the hook that received it.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct EnvoyHttpHeader {
    pub(super) key: EnvoyBuffer,
    pub(super) value: EnvoyBuffer,
}

/// Envoy's own objects (`DynamicModuleHttpFilter`, `...Config`, schedulers, timers) are
/// opaque `void*` to the module.
pub(super) type EnvoyPtr = *mut c_void;
/// The module's objects handed to Envoy (`..._module_ptr`), given back on every hook.
pub(super) type ModulePtr = *const c_void;

/// `envoy_dynamic_module_type_http_header_type`.
pub(super) const HEADER_MAP_REQUEST_HEADERS: u32 = 0;
pub(super) const HEADER_MAP_RESPONSE_HEADERS: u32 = 2;

/// `envoy_dynamic_module_type_log_level` (every level, used or not).
#[allow(dead_code)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum LogLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

/// `envoy_dynamic_module_type_attribute_id` (Envoy's attribute names), the ones the filter reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Attribute {
    /// `request.size`: the request body's size (14th enumerator, from 0: 13).
    RequestSize = 13,
    /// `response.size`: the response body's size (22nd enumerator: 21).
    ResponseSize = 21,
    /// `source.address`: the downstream peer, `ip:port` (25th enumerator: 24).
    SourceAddress = 24,
    /// `xds.route_name`: the `name` of the matched route (62nd enumerator: 61).
    RouteName = 61,
}

/// `envoy_dynamic_module_type_metadata_source_Route`: the matched route's `metadata`.
pub(super) const METADATA_SOURCE_ROUTE: u32 = 1;

/// `envoy_dynamic_module_type_on_http_filter_request_headers_status` (and the response one,
/// which has the same values): what Envoy does after a headers hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum HeadersStatus {
    /// Go on to the next filter.
    Continue = 0,
    /// Hold the request (or response) here; the filter resumes it (`continue_decoding`) or
    /// answers it (`send_response`) later, from a scheduled event or a callout's answer.
    /// Only the headers are held: a body chunk whose hook answers `Continue` sends them on,
    /// so a filter that must decide first returns [`HeadersStatus::StopAllIterationAndWatermark`].
    StopIteration = 1,
    /// Hold the request (or response) here, body and trailers too, until the filter resumes
    /// or answers it: Envoy buffers the body meanwhile (calling no body or trailers hook of
    /// this filter) and, past the buffer limit, stops reading from the client instead of
    /// answering 413 (`FilterHeadersStatus::StopAllIterationAndWatermark`, 5th enumerator: 4).
    StopAllIterationAndWatermark = 4,
}

/// `..._request_body_status` / `..._response_body_status`: `Continue`.
pub(super) const BODY_CONTINUE: u32 = 0;
/// `..._request_trailers_status` / `..._response_trailers_status`: `Continue`.
pub(super) const TRAILERS_CONTINUE: u32 = 0;
/// `envoy_dynamic_module_type_on_http_filter_local_reply_status_Continue`.
pub(super) const LOCAL_REPLY_CONTINUE: u32 = 0;

/// `envoy_dynamic_module_type_http_callout_init_result`: why Envoy refused to start a callout
/// or a stream (`Success`, 0, is not an error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CalloutInitError {
    /// `:method`, `:path` or `host` missing.
    MissingRequiredHeaders,
    ClusterNotFound,
    DuplicateCalloutId,
    /// No request could be made (no healthy upstream host, for one).
    CannotCreateRequest,
    /// A value this version of the ABI does not list.
    Unknown(u32),
}

impl CalloutInitError {
    /// The header's value of this result.
    pub fn code(self) -> u32 {
        match self {
            CalloutInitError::MissingRequiredHeaders => 1,
            CalloutInitError::ClusterNotFound => 2,
            CalloutInitError::DuplicateCalloutId => 3,
            CalloutInitError::CannotCreateRequest => 4,
            CalloutInitError::Unknown(raw) => raw,
        }
    }

    pub(super) fn from_raw(raw: u32) -> Result<(), CalloutInitError> {
        match raw {
            0 => Ok(()),
            1 => Err(CalloutInitError::MissingRequiredHeaders),
            2 => Err(CalloutInitError::ClusterNotFound),
            3 => Err(CalloutInitError::DuplicateCalloutId),
            4 => Err(CalloutInitError::CannotCreateRequest),
            other => Err(CalloutInitError::Unknown(other)),
        }
    }
}

/// `envoy_dynamic_module_type_http_callout_result`: how a one-shot callout ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CalloutResult {
    /// An HTTP response arrived (of any status: see its `:status` header).
    Success,
    /// The request was reset (connection failure, timeout...).
    Reset,
    ExceedResponseBufferLimit,
    Unknown(u32),
}

impl CalloutResult {
    pub(super) fn from_raw(raw: u32) -> CalloutResult {
        match raw {
            0 => CalloutResult::Success,
            1 => CalloutResult::Reset,
            2 => CalloutResult::ExceedResponseBufferLimit,
            other => CalloutResult::Unknown(other),
        }
    }
}

/// `envoy_dynamic_module_type_http_stream_reset_reason` (`AsyncClient::StreamResetReason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamResetReason {
    ConnectionFailure,
    ConnectionTermination,
    LocalReset,
    LocalRefusedStreamReset,
    Overflow,
    RemoteReset,
    RemoteRefusedStreamReset,
    ProtocolError,
    Unknown(u32),
}

impl StreamResetReason {
    pub(super) fn from_raw(raw: u32) -> StreamResetReason {
        match raw {
            0 => StreamResetReason::ConnectionFailure,
            1 => StreamResetReason::ConnectionTermination,
            2 => StreamResetReason::LocalReset,
            3 => StreamResetReason::LocalRefusedStreamReset,
            4 => StreamResetReason::Overflow,
            5 => StreamResetReason::RemoteReset,
            6 => StreamResetReason::RemoteRefusedStreamReset,
            7 => StreamResetReason::ProtocolError,
            other => StreamResetReason::Unknown(other),
        }
    }
}

/// `envoy_dynamic_module_type_metrics_result_Success`.
pub(super) const METRICS_SUCCESS: u32 = 0;

/// A counter defined on a filter configuration or a bootstrap extension configuration: an
/// opaque id Envoy hands back (`size_t`), only meaningful with the configuration (or the
/// filters of the configuration) that defined it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterId(pub usize);

/// A gauge, like [`CounterId`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GaugeId(pub usize);

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{align_of, size_of};

    // The layouts the header implies on x86_64 (LP64): a buffer is a pointer and a size_t,
    // a header two of them. A field out of order or a wrong width would show here.
    #[test]
    fn structs_have_the_c_layout_of_the_header() {
        assert_eq!(size_of::<EnvoyBuffer>(), 16);
        assert_eq!(size_of::<ModuleBuffer<'_>>(), 16);
        assert_eq!(size_of::<ModuleHttpHeader<'_>>(), 32);
        assert_eq!(size_of::<EnvoyHttpHeader>(), 32);
        assert_eq!(align_of::<EnvoyHttpHeader>(), 8);
        let header = ModuleHttpHeader::new(b"name", b"value!");
        assert_eq!(header.key_length, 4);
        assert_eq!(header.value_length, 6);
        assert_eq!(std::mem::offset_of!(ModuleHttpHeader<'_>, value_ptr), 16);
        assert_eq!(std::mem::offset_of!(EnvoyHttpHeader, value), 16);
    }

    #[test]
    fn enumerator_values_follow_the_header_order() {
        assert_eq!(LogLevel::Info as u32, 2);
        assert_eq!(LogLevel::Critical as u32, 5);
        assert_eq!(Attribute::SourceAddress as u32, 24);
        assert_eq!(Attribute::RouteName as u32, 61);
        assert_eq!(HeadersStatus::StopIteration as u32, 1);
        assert_eq!(CalloutInitError::from_raw(0), Ok(()));
        assert_eq!(
            CalloutInitError::from_raw(2),
            Err(CalloutInitError::ClusterNotFound)
        );
        assert_eq!(
            CalloutInitError::from_raw(9),
            Err(CalloutInitError::Unknown(9))
        );
        assert_eq!(CalloutResult::from_raw(1), CalloutResult::Reset);
        assert_eq!(
            StreamResetReason::from_raw(7),
            StreamResetReason::ProtocolError
        );
        assert_eq!(
            StreamResetReason::from_raw(8),
            StreamResetReason::Unknown(8)
        );
    }
}
