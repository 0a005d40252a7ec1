//! Every attack of the hostile-plugin suite, one per event name.

use std::hint::black_box;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use vodo_pdk::{Plugin, Request, Response, entities, hooks, http, log, storage, users};

struct Hostile;

/// What `remember` kept: on a warm instance it outlives the call.
static REMEMBERED: Mutex<String> = Mutex::new(String::new());
/// Calls of `flood-on-5` this instance has served.
static FLOOD_CALLS: AtomicU32 = AtomicU32::new(0);

fn recurse(n: u64) -> u64 {
    if n == 0 { 0 } else { black_box(recurse(black_box(n - 1))) + 1 }
}

impl Plugin for Hostile {
    /// Answers `/big-headers` with 2 MiB of headers and a tiny body, and
    /// anything else with 404.
    fn on_request(request: Request) -> Result<Response, String> {
        if request.path != "/big-headers" {
            return Ok(Response {
                status: 404,
                headers: Vec::new(),
                body: b"not found".to_vec(),
            });
        }
        let headers = (0..8)
            .map(|i| (format!("x-pad-{i}"), "h".repeat(256 << 10)))
            .collect();
        Ok(Response {
            status: 200,
            headers,
            body: b"ok".to_vec(),
        })
    }

    /// Never healthy: an upgrade to this plugin must be refused.
    fn health() -> Result<(), String> {
        Err("the hostile plugin is never healthy".into())
    }

    fn on_event(name: String, payload: String) -> Result<(), String> {
        let e = |e: vodo_pdk::Error| format!("{e:?}");
        match name.as_str() {
            "loop" => {
                let mut i = 0u64;
                loop {
                    i = black_box(i.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(black_box(vec![1u8; 1 << 20]));
                }
            }
            "recurse" => {
                black_box(recurse(black_box(u64::MAX)));
                Ok(())
            }
            "output" => Err("x".repeat(8 << 20)),
            "stdout" => {
                for _ in 0..64 {
                    println!("{}", "y".repeat(64 << 10));
                }
                Ok(())
            }
            "trap" => {
                let v: Vec<u32> = black_box(Vec::new());
                Err(format!("{}", v[black_box(3)]))
            }
            "entity-write" => entities::put("order", "1", r#"{"paid":true}"#).map_err(e),
            "hook-trigger" => hooks::trigger("order.refunded", "{}").map_err(e),
            "http" => http::get(&payload).map(drop).map_err(e),
            // A 24 MiB upload to the URL in the payload: more than socket
            // buffers hold, so a slow reader holds the writer.
            "http-post" => http::fetch(&http::Outgoing {
                method: "POST".into(),
                url: payload,
                headers: Vec::new(),
                body: vec![b'u'; 24 << 20],
            })
            .map(drop)
            .map_err(e),
            "file-read" => storage::read(&payload).map(drop).map_err(e),
            "file-write" => storage::write(&payload, &[b'z'; 600]).map_err(e),
            "file-delete" => storage::delete(&payload).map(drop).map_err(e),
            // `count:kib`: that many hook triggers of that many KiB each.
            "push" => {
                let (count, kib) = payload.split_once(':').ok_or("payload is count:kib")?;
                let count: usize = count.parse().map_err(|_| "bad count")?;
                let big = "p".repeat(kib.parse::<usize>().map_err(|_| "bad size")? << 10);
                for _ in 0..count {
                    hooks::trigger("order.noted", &big).map_err(e)?;
                }
                Ok(())
            }
            "rate-burst" => {
                for i in 0..1000 {
                    entities::get("order", &i.to_string()).map_err(e)?;
                }
                Ok(())
            }
            "entity-read" => entities::get("order", "1").map(drop).map_err(e),
            "user-write" => users::put(&payload, r#"{"role":"admin"}"#).map_err(e),
            // Tries what it may not, handles the refusal, and carries on.
            "try-write" => {
                let refused = entities::put("order", "1", r#"{"paid":true}"#);
                log::warn(&format!("write refused: {refused:?}"));
                entities::get("order", "1").map(drop).map_err(e)
            }
            // State that would leak between calls if an instance were shared.
            "remember" => {
                *REMEMBERED.lock().map_err(|_| "poisoned")? = payload;
                Ok(())
            }
            "recall" => Err(format!(
                "remembered `{}`",
                REMEMBERED.lock().map_err(|_| "poisoned")?
            )),
            // Keeps 4 MiB more on every call.
            "grow" => {
                black_box(Box::leak(vec![7u8; 4 << 20].into_boxed_slice()));
                Ok(())
            }
            // Quiet for four calls, then floods stdout.
            "flood-on-5" => {
                if FLOOD_CALLS.fetch_add(1, Ordering::Relaxed) + 1 == 5 {
                    for _ in 0..64 {
                        println!("{}", "f".repeat(64 << 10));
                    }
                }
                Ok(())
            }
            _ => Err(format!("unknown attack `{name}`")),
        }
    }
}

vodo_pdk::export_plugin!(Hostile);
