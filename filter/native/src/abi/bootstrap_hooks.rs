//! The program hook and the bootstrap extension hooks the module exports
//! (`envoy_dynamic_module_on_program_init`, `envoy_dynamic_module_on_bootstrap_extension_*`).
//! Envoy 1.40 looks the bootstrap ones up when it loads an `envoy.bootstrap.dynamic_modules`
//! extension: all 17 it knows are here (the same names as in the 1.40.0 binary).
//!
//! Every bootstrap hook runs on the main thread except `worker_thread_initialized` (once on
//! each worker as it starts). A bootstrap extension configuration is a `Box<BootstrapSlot>`
//! (freed in `config_destroy`); the per-server extension object Envoy also asks for
//! (`extension_new`) carries nothing, and is a pointer to a static.

use std::cell::RefCell;
use std::ffi::c_void;

use super::bootstrap_config::{self, BootstrapHandle};
use super::log::log;
use super::module::BootstrapConfig;
use super::types::{EnvoyBuffer, EnvoyHttpHeader, EnvoyPtr, LogLevel, ModulePtr};
use crate::panic_guard;

/// The ABI version this module was written against (Envoy 1.40.0 logs "matched" for it; a
/// mismatch only warns).
const ABI_VERSION: &[u8] = b"v0.2.0\0";

/// Main thread, once, when Envoy loads the `.so`. Returns the ABI version (a NUL-terminated
/// string the module owns, read during this call); null would unload the module.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_program_init() -> *const u8 {
    panic_guard::install();
    ABI_VERSION.as_ptr()
}

struct BootstrapSlot {
    config: RefCell<Box<dyn BootstrapConfig>>,
    /// Envoy's pointer, to forget it (`bootstrap_config::live`) when the slot goes.
    envoy_ptr: EnvoyPtr,
}

/// The per-server extension object: nothing in it.
static EXTENSION: u8 = 0;

fn log_panic(hook: &str, panicked: &panic_guard::Panicked, consequence: &str) {
    log(
        LogLevel::Error,
        &format!("keysync native module: a panic in {hook} ({panicked}); {consequence}"),
    );
}

/// # Safety
/// `ptr` must be a `BootstrapSlot` from `config_new`, not yet destroyed.
unsafe fn bootstrap_slot<'a>(ptr: ModulePtr) -> Option<&'a BootstrapSlot> {
    // SAFETY: by the caller's promise the pointer is a live slot or null.
    unsafe { ptr.cast::<BootstrapSlot>().as_ref() }
}

/// Runs `hook` on the configuration unless a hook of it is already running (a callback
/// re-entering the module); a panic is logged.
fn with_config(
    config_envoy_ptr: EnvoyPtr,
    config_ptr: ModulePtr,
    hook_name: &str,
    hook: impl FnOnce(&mut dyn BootstrapConfig, &mut BootstrapHandle<'_>),
) {
    // SAFETY: a live configuration pointer from Envoy.
    let Some(slot) = (unsafe { bootstrap_slot(config_ptr) }) else {
        return;
    };
    let Ok(mut config) = slot.config.try_borrow_mut() else {
        return;
    };
    let outcome = panic_guard::run(|| {
        let mut handle = BootstrapHandle::new(config_envoy_ptr);
        hook(config.as_mut(), &mut handle);
    });
    if let Err(panicked) = outcome {
        log_panic(hook_name, &panicked, "event dropped");
    }
}

/// Main thread, when Envoy loads the extension. `name` and `config` are Envoy's, valid for
/// the call. Null refuses the extension (and Envoy's start).
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_bootstrap_extension_config_new(
    config_envoy_ptr: EnvoyPtr,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> ModulePtr {
    // SAFETY: hook arguments, valid for the call.
    let (name, settings) = unsafe {
        (
            name.bytes().unwrap_or_default(),
            config.bytes().unwrap_or_default(),
        )
    };
    let made = panic_guard::run(|| {
        let mut handle = BootstrapHandle::new(config_envoy_ptr);
        crate::MODULE.new_bootstrap_config(&mut handle, name, settings)
    });
    match made {
        Ok(Some(config)) => {
            bootstrap_config::config_created(config_envoy_ptr);
            Box::into_raw(Box::new(BootstrapSlot {
                config: RefCell::new(config),
                envoy_ptr: config_envoy_ptr,
            })) as ModulePtr
        }
        Ok(None) => std::ptr::null(),
        Err(panicked) => {
            log_panic(
                "bootstrap_extension_config_new",
                &panicked,
                "extension refused",
            );
            std::ptr::null()
        }
    }
}

/// Main thread, when Envoy drops the extension configuration.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_bootstrap_extension_config_destroy(config_ptr: ModulePtr) {
    if config_ptr.is_null() {
        return;
    }
    // SAFETY: a `BootstrapSlot` from `config_new`, destroyed exactly once, here.
    let slot = unsafe { Box::from_raw(config_ptr.cast::<BootstrapSlot>().cast_mut()) };
    bootstrap_config::config_destroyed(slot.envoy_ptr);
    if let Err(panicked) = panic_guard::run(move || drop(slot)) {
        log_panic("bootstrap_extension_config_destroy", &panicked, "dropped");
    }
}

/// Main thread: the extension object for the server; ours carries nothing.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_bootstrap_extension_new(
    _config_ptr: ModulePtr,
    _extension_envoy_ptr: EnvoyPtr,
) -> ModulePtr {
    std::ptr::addr_of!(EXTENSION).cast()
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_bootstrap_extension_destroy(_extension_ptr: ModulePtr) {}

/// Main thread: the server is initialized (the cluster manager is up).
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_bootstrap_extension_server_initialized(
    _extension_envoy_ptr: EnvoyPtr,
    _extension_ptr: ModulePtr,
) {
}

/// Each worker thread, once, as it starts.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_bootstrap_extension_worker_thread_initialized(
    _extension_envoy_ptr: EnvoyPtr,
    _extension_ptr: ModulePtr,
) {
}

/// Main thread: Envoy starts draining.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_bootstrap_extension_drain_started(
    _extension_envoy_ptr: EnvoyPtr,
    _extension_ptr: ModulePtr,
) {
}

/// Main thread, at exit: Envoy waits until `completion_callback(completion_context)` is called
/// (exactly once). Nothing to flush yet: called at once.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_bootstrap_extension_shutdown(
    _extension_envoy_ptr: EnvoyPtr,
    _extension_ptr: ModulePtr,
    completion_callback: Option<unsafe extern "C" fn(*mut c_void)>,
    completion_context: *mut c_void,
) {
    if let Some(done) = completion_callback {
        // SAFETY: Envoy's completion callback with the context it gave, called once.
        unsafe { done(completion_context) }
    }
}

/// Main thread: an event committed through a `BootstrapScheduler`.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_bootstrap_extension_config_scheduled(
    config_envoy_ptr: EnvoyPtr,
    config_ptr: ModulePtr,
    event_id: u64,
) {
    with_config(
        config_envoy_ptr,
        config_ptr,
        "bootstrap_extension_config_scheduled",
        |config, handle| config.on_scheduled(handle, event_id),
    );
}

/// Main thread: a timer of this configuration fired.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_bootstrap_extension_timer_fired(
    config_envoy_ptr: EnvoyPtr,
    config_ptr: ModulePtr,
    timer_ptr: EnvoyPtr,
) {
    with_config(
        config_envoy_ptr,
        config_ptr,
        "bootstrap_extension_timer_fired",
        |config, handle| config.on_timer(handle, timer_ptr as usize),
    );
}

// Events keysync does not ask for (file watches, cluster and listener lifecycle, admin
// handlers, bootstrap callouts): Envoy sends them only on opt-in, but requires the hooks.

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_bootstrap_extension_file_changed(
    _config_envoy_ptr: EnvoyPtr,
    _config_ptr: ModulePtr,
    _path: EnvoyBuffer,
    _events: u32,
) {
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_bootstrap_extension_cluster_add_or_update(
    _config_envoy_ptr: EnvoyPtr,
    _config_ptr: ModulePtr,
    _cluster_name: EnvoyBuffer,
) {
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_bootstrap_extension_cluster_removal(
    _config_envoy_ptr: EnvoyPtr,
    _config_ptr: ModulePtr,
    _cluster_name: EnvoyBuffer,
) {
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_bootstrap_extension_listener_add_or_update(
    _config_envoy_ptr: EnvoyPtr,
    _config_ptr: ModulePtr,
    _listener_name: EnvoyBuffer,
) {
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_bootstrap_extension_listener_removal(
    _config_envoy_ptr: EnvoyPtr,
    _config_ptr: ModulePtr,
    _listener_name: EnvoyBuffer,
) {
}

#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_bootstrap_extension_http_callout_done(
    _config_envoy_ptr: EnvoyPtr,
    _config_ptr: ModulePtr,
    _callout_id: u64,
    _result: u32,
    _headers: *const EnvoyHttpHeader,
    _headers_size: usize,
    _body_chunks: *const EnvoyBuffer,
    _body_chunks_size: usize,
) {
}

/// An admin endpoint the module registered (none): 404.
#[unsafe(no_mangle)]
extern "C" fn envoy_dynamic_module_on_bootstrap_extension_admin_request(
    _config_envoy_ptr: EnvoyPtr,
    _config_ptr: ModulePtr,
    _method: EnvoyBuffer,
    _path: EnvoyBuffer,
    _body: EnvoyBuffer,
) -> u32 {
    404
}
