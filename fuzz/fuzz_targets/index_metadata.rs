//! The signed index's metadata, as a hostile mirror serves it: a pinned
//! root, and every file a client update fetches.
#![no_main]
use std::sync::LazyLock;

use vodo_core::Timestamp;
use vodo_marketplace::index::{Client, IndexError, Repository, RoleSigners, SigningKey, Source};

#[derive(Debug)]
struct Hostile<'a>(&'a [u8]);

impl Source for Hostile<'_> {
    fn fetch(&self, _name: &str, max: u64) -> Result<Option<Vec<u8>>, IndexError> {
        let n = self.0.len().min(usize::try_from(max).unwrap_or(usize::MAX));
        Ok(Some(self.0[..n].to_vec()))
    }
}

static ROOT: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let keys: Vec<SigningKey> = (0..4).map(|_| SigningKey::generate().unwrap()).collect();
    let signers = RoleSigners {
        root: vec![&keys[0]],
        targets: vec![&keys[1]],
        snapshot: vec![&keys[2]],
        timestamp: vec![&keys[3]],
    };
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::create(dir.path(), &signers, Timestamp(i64::MAX / 2)).unwrap();
    repo.pinned_root().unwrap()
});

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = Client::new(data);
    if let Ok(mut client) = Client::new(&ROOT) {
        let _ = client.update(&Hostile(data), Timestamp(1_000_000));
    }
});
