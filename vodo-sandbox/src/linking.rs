//! Capability linking: a plugin's linker holds only the host interfaces its
//! grant covers, so a component that imports more cannot even be
//! instantiated. The table from WIT interface to capability is
//! [`vodo_core::runtime::Interface`], shared with the marketplace's review;
//! [`add_interface`] is its one match from interface to linker function.
//!
//! `InstancePre`s are cached by (component, linked interfaces): a thousand
//! plugins on one component with the same kind of grant share one.

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
        if let Some(p) = self.pres.get(&(hash, linked.bits())) {
            return Ok(p.clone());
        }
        let link_err = |e: wasmtime::Error| LoadError::Config(format!("linking: {e:#}"));
        let mut linker: Linker<HostState> = Linker::new(self.engine());
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(link_err)?;
        for interface in linked.iter() {
            add_interface(&mut linker, interface).map_err(link_err)?;
        }
        let pre = linker
            .instantiate_pre(component)
            .and_then(PluginPre::new)
            .map_err(|e| LoadError::Config(format!("preparing the instance: {e:#}")))?;
        self.pres.insert((hash, linked.bits()), pre.clone());
        Ok(pre)
    }

    /// The asynchronous `InstancePre` of `component` with exactly `linked`
    /// interfaces: WASI and the host functions that may wait are async.
    pub(crate) fn pre_async(
        &self,
        hash: [u8; 32],
        component: &Component,
        linked: InterfaceSet,
    ) -> Result<AsyncPluginPre<HostState>, LoadError> {
        if let Some(p) = self.pres_async.get(&(hash, linked.bits())) {
            return Ok(p.clone());
        }
        let link_err = |e: wasmtime::Error| LoadError::Config(format!("linking: {e:#}"));
        let mut linker: Linker<HostState> = Linker::new(self.engine());
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link_err)?;
        let services_wait = self.shared.services.waits();
        for interface in linked.iter() {
            add_interface_async(&mut linker, interface, services_wait).map_err(link_err)?;
        }
        let pre = linker
            .instantiate_pre(component)
            .and_then(AsyncPluginPre::new)
            .map_err(|e| LoadError::Config(format!("preparing the instance: {e:#}")))?;
        self.pres_async.insert((hash, linked.bits()), pre.clone());
        Ok(pre)
    }
}
