//! Capability linking: a plugin's linker holds only the host interfaces its
//! grant covers, so a component that imports more cannot even be
//! instantiated. The table from WIT interface to capability is
//! [`vodo_core::runtime::Interface`], shared with the marketplace's review;
//! [`add_interface`] is its one match from interface to linker function.
//!
//! `InstancePre`s are cached by (component, linked interfaces): a thousand
//! plugins on one component with the same kind of grant share one.

use dashmap::DashMap;
use vodo_core::PluginId;
use vodo_core::runtime::{Interface, InterfaceSet};
use wasmtime::component::{Component, HasSelf, Linker};

use crate::host::{self, HostState, PluginPre};
use crate::host_async::AsyncPluginPre;
use crate::{LoadError, Sandbox};

/// Adds the host side of `interface` to `linker`.
fn add_interface(linker: &mut Linker<HostState>, interface: Interface) -> wasmtime::Result<()> {
    type H = HasSelf<HostState>;
    use host::vodo::plugin as wit;
    match interface {
        Interface::Types => wit::types::add_to_linker::<HostState, H>(linker, |s| s),
        Interface::Log => wit::log::add_to_linker::<HostState, H>(linker, |s| s),
        Interface::Entities => wit::entities::add_to_linker::<HostState, H>(linker, |s| s),
        Interface::Hooks => wit::hooks::add_to_linker::<HostState, H>(linker, |s| s),
        Interface::Storage => wit::storage::add_to_linker::<HostState, H>(linker, |s| s),
        Interface::Http => wit::http::add_to_linker::<HostState, H>(linker, |s| s),
        Interface::Settings => wit::settings::add_to_linker::<HostState, H>(linker, |s| s),
        Interface::Users => wit::users::add_to_linker::<HostState, H>(linker, |s| s),
    }
}

/// Adds the asynchronous host side of `interface` to `linker`. The
/// interfaces of the host's services are linked synchronously when the
/// services never wait (`services_wait` is false): they answer in place
/// either way, and a synchronous host function costs less.
fn add_interface_async(
    linker: &mut Linker<HostState>,
    interface: Interface,
    services_wait: bool,
) -> wasmtime::Result<()> {
    type H = HasSelf<HostState>;
    use crate::host_async::bindings::vodo::plugin as wit;
    match interface {
        Interface::Types | Interface::Log => add_interface(linker, interface),
        Interface::Entities | Interface::Hooks | Interface::Settings | Interface::Users
            if !services_wait =>
        {
            add_interface(linker, interface)
        }
        Interface::Entities => wit::entities::add_to_linker::<HostState, H>(linker, |s| s),
        Interface::Hooks => wit::hooks::add_to_linker::<HostState, H>(linker, |s| s),
        Interface::Storage => wit::storage::add_to_linker::<HostState, H>(linker, |s| s),
        Interface::Http => wit::http::add_to_linker::<HostState, H>(linker, |s| s),
        Interface::Settings => wit::settings::add_to_linker::<HostState, H>(linker, |s| s),
        Interface::Users => wit::users::add_to_linker::<HostState, H>(linker, |s| s),
    }
}

/// The first import of `component` that `linked` does not provide, as
/// `(import, interface)`; `Err` names an import no Vodo host provides.
pub(crate) fn missing_import(
    sandbox: &Sandbox,
    plugin: &PluginId,
    component: &Component,
    linked: InterfaceSet,
) -> Result<Option<(String, Interface)>, LoadError> {
    for (name, _) in component.component_type().imports(sandbox.engine()) {
        match Interface::of_import(name) {
            Err(()) => {
                return Err(LoadError::UnknownImport {
                    plugin: plugin.to_string(),
                    import: name.to_owned(),
                });
            }
            Ok(Some(i)) if !linked.contains(i) => return Ok(Some((name.to_owned(), i))),
            Ok(_) => {}
        }
    }
    Ok(None)
}

/// Refuses a component that imports an interface `linked` does not provide,
/// with the permission it lacks.
pub(crate) fn check_imports(
    sandbox: &Sandbox,
    plugin: &PluginId,
    component: &Component,
    linked: InterfaceSet,
) -> Result<(), LoadError> {
    match missing_import(sandbox, plugin, component, linked)? {
        None => Ok(()),
        Some((import, interface)) => Err(LoadError::MissingPermission {
            plugin: plugin.to_string(),
            import,
            capability: interface.permission(),
            scope: interface
                .capability()
                .map_or("", vodo_scopes::Capability::example_scope),
        }),
    }
}

impl Sandbox {
    /// The `InstancePre` of `component` with exactly `linked` interfaces.
    pub(crate) fn pre(
        &self,
        hash: [u8; 32],
        component: &Component,
        linked: InterfaceSet,
    ) -> Result<PluginPre<HostState>, LoadError> {
        cached_pre(
            &self.pres,
            self.linker(linked, add_interface, false),
            (hash, linked.bits()),
            component,
            PluginPre::new,
        )
    }

    /// The asynchronous `InstancePre` of `component` with exactly `linked`
    /// interfaces: WASI and the host functions that may wait are async.
    pub(crate) fn pre_async(
        &self,
        hash: [u8; 32],
        component: &Component,
        linked: InterfaceSet,
    ) -> Result<AsyncPluginPre<HostState>, LoadError> {
        cached_pre(
            &self.pres_async,
            self.linker(
                linked,
                |linker, interface| {
                    add_interface_async(linker, interface, self.shared.services.waits())
                },
                true,
            ),
            (hash, linked.bits()),
            component,
            AsyncPluginPre::new,
        )
    }

    /// A linker with WASI (sync or async) and the `linked` interfaces, each
    /// added by `add`. Built only when the cache has no template yet.
    fn linker(
        &self,
        linked: InterfaceSet,
        add: impl Fn(&mut Linker<HostState>, Interface) -> wasmtime::Result<()>,
        async_wasi: bool,
    ) -> impl FnOnce() -> Result<Linker<HostState>, LoadError> {
        move || {
            let link_err = |e: wasmtime::Error| LoadError::Config(format!("linking: {e:#}"));
            let mut linker: Linker<HostState> = Linker::new(self.engine());
            if async_wasi {
                wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link_err)?;
            } else {
                wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(link_err)?;
            }
            for interface in linked.iter() {
                add(&mut linker, interface).map_err(link_err)?;
            }
            Ok(linker)
        }
    }
}

/// The template in `cache` under `key`, or one made from the linker that
/// `linker` builds, wrapped by `wrap` and kept.
fn cached_pre<P: Clone>(
    cache: &DashMap<([u8; 32], u16), P>,
    linker: impl FnOnce() -> Result<Linker<HostState>, LoadError>,
    key: ([u8; 32], u16),
    component: &Component,
    wrap: impl FnOnce(wasmtime::component::InstancePre<HostState>) -> wasmtime::Result<P>,
) -> Result<P, LoadError> {
    if let Some(p) = cache.get(&key) {
        return Ok(p.clone());
    }
    let pre = linker()?
        .instantiate_pre(component)
        .and_then(wrap)
        .map_err(|e| LoadError::Config(format!("preparing the instance: {e:#}")))?;
    cache.insert(key, pre.clone());
    Ok(pre)
}
