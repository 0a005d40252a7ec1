//! The package format: one file holding a plugin's manifest, component,
//! readme and sample events, with the SHA-256 of each part.
//!
//! ```text
//! "VODOPKG1" | header length (u32, little endian) | header (JSON) | component bytes
//! ```
//!
//! The header carries the manifest and readme as text, the sample events
//! the review runs, and the hash of every part. A package is stored and
//! served under the SHA-256 of the whole file.

use serde::{Deserialize, Serialize};

use crate::{hex, sha256};

const MAGIC: &[u8; 8] = b"VODOPKG1";
/// The largest header accepted.
pub const MAX_HEADER_BYTES: usize = 1 << 20;

/// The hashes of a package's parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksums {
    /// SHA-256 of the manifest text.
    pub manifest: String,
    /// SHA-256 of the readme text.
    pub readme: String,
    /// SHA-256 of the component.
    pub component: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    format: u32,
    manifest: String,
    readme: String,
    samples: Vec<(String, String)>,
    component_length: u64,
    sha256: Checksums,
}

/// A package's parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// The `plugin.json` text.
    pub manifest: String,
    /// The readme (Markdown).
    pub readme: String,
    /// Sample events `(name, payload)` the review runs.
    pub samples: Vec<(String, String)>,
    /// The WebAssembly component.
    pub component: Vec<u8>,
}

/// Why a package file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackageError {
    /// The file is larger than the policy allows.
    #[error("the package is {size} bytes, over the {max}-byte limit")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Not a Vodo package, or cut short.
    #[error("not a Vodo package: {0}")]
    Malformed(String),
    /// A part does not match its hash.
    #[error("the {0} does not match its checksum")]
    Checksum(&'static str),
}

impl Package {
    /// Encodes the package.
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = Header {
            format: 1,
            manifest: self.manifest.clone(),
            readme: self.readme.clone(),
            samples: self.samples.clone(),
            component_length: self.component.len() as u64,
            sha256: Checksums {
                manifest: hex(&sha256(self.manifest.as_bytes())),
                readme: hex(&sha256(self.readme.as_bytes())),
                component: hex(&sha256(&self.component)),
            },
        };
        // A header of plain strings always serializes.
        let json = serde_json::to_vec(&header).unwrap_or_default();
        let mut out = Vec::with_capacity(12 + json.len() + self.component.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&u32::try_from(json.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(&self.component);
        out
    }

    /// Decodes and checks a package of at most `max` bytes.
    pub fn parse(bytes: &[u8], max: u64) -> Result<Self, PackageError> {
        if bytes.len() as u64 > max {
            return Err(PackageError::TooLarge {
                size: bytes.len() as u64,
                max,
            });
        }
        let rest = bytes
            .strip_prefix(MAGIC)
            .ok_or_else(|| PackageError::Malformed("it does not start with `VODOPKG1`".into()))?;
        let (len, rest) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| PackageError::Malformed("the header length is missing".into()))?;
        let len = u32::from_le_bytes(*len) as usize;
        if len > MAX_HEADER_BYTES || len > rest.len() {
            return Err(PackageError::Malformed(
                "the header length is out of range".into(),
            ));
        }
        let (json, component) = rest.split_at(len);
        let header: Header = serde_json::from_slice(json)
            .map_err(|e| PackageError::Malformed(format!("the header is not valid: {e}")))?;
        if header.format != 1 {
            return Err(PackageError::Malformed(format!(
                "format {} is not supported",
                header.format
            )));
        }
        if header.component_length != component.len() as u64 {
            return Err(PackageError::Malformed(
                "the component length does not match the header".into(),
            ));
        }
        if hex(&sha256(header.manifest.as_bytes())) != header.sha256.manifest {
            return Err(PackageError::Checksum("manifest"));
        }
        if hex(&sha256(header.readme.as_bytes())) != header.sha256.readme {
            return Err(PackageError::Checksum("readme"));
        }
        if hex(&sha256(component)) != header.sha256.component {
            return Err(PackageError::Checksum("component"));
        }
        Ok(Self {
            manifest: header.manifest,
            readme: header.readme,
            samples: header.samples,
            component: component.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tampering() {
        let p = Package {
            manifest: "{}".into(),
            readme: "# Hi".into(),
            samples: vec![("order.created".into(), "1".into())],
            component: vec![0, 97, 115, 109],
        };
        let bytes = p.to_bytes();
        assert_eq!(Package::parse(&bytes, 1 << 20).unwrap(), p);
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(
            Package::parse(&flipped, 1 << 20),
            Err(PackageError::Checksum("component"))
        );
        assert!(matches!(
            Package::parse(&bytes, 10),
            Err(PackageError::TooLarge { .. })
        ));
        assert!(matches!(
            Package::parse(b"VODOPKG1\xff\xff\xff\xff", 100),
            Err(PackageError::Malformed(_))
        ));
        assert!(matches!(
            Package::parse(b"PK\x03\x04", 100),
            Err(PackageError::Malformed(_))
        ));
        assert!(matches!(
            Package::parse(&bytes[..bytes.len() - 1], 1 << 20),
            Err(PackageError::Malformed(_))
        ));
    }
}
