//! The asynchronous bindings of the `plugin` world, for
//! [`Sandbox::call_event_async`](crate::Sandbox::call_event_async) and its
//! siblings.
//!
//! The same host functions as `host.rs`, the same checks, written once
//! there: here they run over the sandbox's blocking [`Pool`], so a host call
//! that waits on the host's services, the plugin's folder or the network
//! suspends the plugin's fiber instead of the runtime's worker. The types
//! and the log are shared with the synchronous bindings.

use crate::blocking::Pool;
use crate::host::{Fetch, HostResult, HostState};

/// Bindings generated from `vodo-pdk/wit/plugin.wit`, asynchronous.
#[allow(missing_docs)]
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../vodo-pdk/wit",
        world: "plugin",
        imports: {
            "vodo:plugin/entities": async | trappable,
            "vodo:plugin/hooks": async | trappable,
            "vodo:plugin/storage": async | trappable,
            "vodo:plugin/http": async | trappable,
            "vodo:plugin/settings": async | trappable,
            "vodo:plugin/users": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        with: {
            "vodo:plugin/types": crate::host::vodo::plugin::types,
            "vodo:plugin/log": crate::host::vodo::plugin::log,
        },
        require_store_data_send: true,
    });
}

use bindings::vodo::plugin as wit;
pub(crate) use bindings::{Plugin as AsyncPlugin, PluginPre as AsyncPluginPre};

/// Runs `$body` with the call's context and the blocking pool.
macro_rules! pooled {
    ($state:ident, |$c:ident, $run:ident| $body:expr) => {{
        let $run = &Pool(std::sync::Arc::clone(&$state.call.shared.blocking));
        let $c = &mut $state.call;
        $body.await
    }};
}

impl wit::entities::Host for HostState {
    async fn get(&mut self, kind: String, id: String) -> HostResult<Option<String>> {
        pooled!(self, |c, run| c.entity_get(run, kind, id))
    }

    async fn put(&mut self, kind: String, id: String, json: String) -> HostResult<()> {
        pooled!(self, |c, run| c.entity_put(run, kind, id, json))
    }

    async fn delete(&mut self, kind: String, id: String) -> HostResult<bool> {
        pooled!(self, |c, run| c.entity_delete(run, kind, id))
    }
}

impl wit::hooks::Host for HostState {
    async fn trigger(&mut self, name: String, payload: String) -> HostResult<()> {
        pooled!(self, |c, run| c.hook_trigger(run, name, payload))
    }
}

impl wit::users::Host for HostState {
    async fn get(&mut self, id: String) -> HostResult<Option<String>> {
        pooled!(self, |c, run| c.user_get(run, id))
    }

    async fn put(&mut self, id: String, json: String) -> HostResult<()> {
        pooled!(self, |c, run| c.user_put(run, id, json))
    }
}

impl wit::settings::Host for HostState {
    async fn get(&mut self, key: String) -> HostResult<Option<String>> {
        pooled!(self, |c, run| c.setting_get(run, key))
    }

    async fn set(&mut self, key: String, value: String) -> HostResult<()> {
        pooled!(self, |c, run| c.setting_set(run, key, value))
    }
}

impl wit::storage::Host for HostState {
    async fn read(&mut self, path: String) -> HostResult<Vec<u8>> {
        pooled!(self, |c, run| c.file_read(run, path))
    }

    async fn write(&mut self, path: String, data: Vec<u8>) -> HostResult<()> {
        pooled!(self, |c, run| c.file_write(run, path, data))
    }

    async fn delete(&mut self, path: String) -> HostResult<bool> {
        pooled!(self, |c, run| c.file_delete(run, path))
    }

    async fn list_files(&mut self) -> HostResult<Vec<String>> {
        pooled!(self, |c, run| c.file_list(run))
    }
}

impl wit::http::Host for HostState {
    async fn fetch(&mut self, request: wit::http::Outgoing) -> HostResult<wit::http::Incoming> {
        let request = Fetch {
            method: request.method,
            url: request.url,
            headers: request.headers,
            body: request.body,
        };
        let out = pooled!(self, |c, run| c.fetch(run, request))?;
        Ok(out.map(|r| wit::http::Incoming {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }))
    }
}
