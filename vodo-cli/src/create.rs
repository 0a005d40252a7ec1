//! `vodo plugin:create` and `vodo plugin:init`: a new plugin folder from one
//! of the starter templates, with the plugin kit vendored beside it so that
//! it builds anywhere.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use vodo_core::Manifest;

/// A starter template.
pub struct Template {
    /// Its name on the command line.
    pub name: &'static str,
    /// What it shows, in a line.
    pub summary: &'static str,
    /// Its files: path in the new folder, text with `{{...}}` placeholders.
    files: &'static [(&'static str, &'static str)],
}

macro_rules! template {
    ($name:literal, $summary:literal, [$($file:literal),* $(,)?]) => {
        Template {
            name: $name,
            summary: $summary,
            files: &[$(($file, include_str!(concat!("../templates/", $name, "/", $file)))),*],
        }
    };
}

/// The six starter templates, `basic` first.
pub const TEMPLATES: &[Template] = &[
    template!(
        "basic",
        "one hook: a log line for every new order",
        [
            "plugin.json",
            "src/lib.rs",
            "tests/describe.rs",
            "samples.json",
            "README.md",
        ]
    ),
    template!(
        "entity",
        "a custom entity with its views served by the plugin's routes",
        [
            "plugin.json",
            "src/lib.rs",
            "tests/gift_messages.rs",
            "samples.json",
            "README.md",
        ]
    ),
    template!(
        "integration",
        "an external API through allowlisted HTTP, tested against a fake server",
        [
            "plugin.json",
            "src/lib.rs",
            "tests/carrier.rs",
            "samples.json",
            "README.md",
        ]
    ),
    template!(
        "dashboard",
        "a dashboard widget served as an HTML fragment, with its data",
        [
            "plugin.json",
            "src/lib.rs",
            "tests/widget.rs",
            "samples.json",
            "README.md",
        ]
    ),
    template!(
        "ecommerce",
        "products, orders and payments hooks",
        [
            "plugin.json",
            "src/lib.rs",
            "tests/store.rs",
            "samples.json",
            "README.md",
        ]
    ),
    template!(
        "workflow",
        "an automation: a trigger, a condition and actions, with settings",
        [
            "plugin.json",
            "src/lib.rs",
            "tests/rule.rs",
            "samples.json",
            "README.md",
        ]
    ),
];

/// Files every template has.
const COMMON: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../templates/common/Cargo.toml")),
    (".gitignore", include_str!("../templates/common/gitignore")),
];

/// The plugin kit, vendored into every new plugin at `vendor/vodo-pdk`.
const PDK_LIB: &str = include_str!("../../vodo-pdk/src/lib.rs");
const PDK_WIT: &str = include_str!("../../vodo-pdk/wit/plugin.wit");
const PDK_MANIFEST: &str = include_str!("../../vodo-pdk/Cargo.toml");

/// Where a plugin's folder vendors the kit.
pub const PDK_DIR: &str = "vendor/vodo-pdk";

/// The template called `name`.
pub fn template(name: &str) -> Result<&'static Template> {
    TEMPLATES.iter().find(|t| t.name == name).with_context(|| {
        format!(
            "there is no template `{name}`: choose one of {}",
            names().join(", ")
        )
    })
}

fn names() -> Vec<&'static str> {
    TEMPLATES.iter().map(|t| t.name).collect()
}

/// What was made.
pub struct Created {
    /// The plugin's folder.
    pub dir: PathBuf,
    /// Its slug.
    pub slug: String,
    /// The template used.
    pub template: &'static str,
    /// The files written, relative to `dir`.
    pub files: Vec<String>,
}

/// The template to use: `given`, or asked for when a terminal is attached,
/// or `basic`.
pub fn choose(given: Option<&str>) -> Result<&'static Template> {
    if let Some(name) = given {
        return template(name);
    }
    let (stdin, stderr) = (std::io::stdin(), std::io::stderr());
    if !stdin.is_terminal() || !stderr.is_terminal() {
        return template("basic");
    }
    let mut err = stderr.lock();
    writeln!(err, "Which template?")?;
    for (i, t) in TEMPLATES.iter().enumerate() {
        writeln!(err, "  {}) {:12} {}", i + 1, t.name, t.summary)?;
    }
    loop {
        write!(err, "number or name [1]: ")?;
        err.flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            bail!("no template chosen: pass --template {}", names().join("|"));
        }
        let answer = line.trim();
        if answer.is_empty() {
            return template("basic");
        }
        if let Some(t) = answer
            .parse::<usize>()
            .ok()
            .and_then(|n| TEMPLATES.get(n.wrapping_sub(1)))
        {
            return Ok(t);
        }
        match template(answer) {
            Ok(t) => return Ok(t),
            Err(e) => writeln!(err, "{e}")?,
        }
    }
}

/// `vodo plugin:create NAME`: a new folder `./{slug}` (refused if it exists
/// and is not empty).
pub fn create(parent: &Path, name: &str, template: &'static Template) -> Result<Created> {
    let (slug, _) = names_of(name)?;
    let dir = parent.join(&slug);
    if dir.exists()
        && std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read `{}`", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "`{}` exists and is not empty: choose another name, or run `vodo plugin:init` inside a new folder",
            dir.display()
        );
    }
    write_plugin(&dir, name, template)
}

/// `vodo plugin:init`: the same into `dir`, which may hold other files but
/// none the template writes (then nothing is written).
pub fn init(dir: &Path, name: Option<&str>, template: &'static Template) -> Result<Created> {
    let name = match name {
        Some(n) => n.to_owned(),
        None => {
            let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
            absolute
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_owned)
                .context("cannot name the plugin after this folder: pass --name")?
        }
    };
    write_plugin(dir, &name, template)
}

/// The slug and the display name of a plugin called `name`.
fn names_of(name: &str) -> Result<(String, String)> {
    let slug = vodo_core::manifest::slugify(name);
    if slug.len() < 3 {
        bail!(
            "`{name}` does not make a slug of at least 3 letters, digits and dashes: name the plugin like `gift-messages` or \"Gift Messages\""
        );
    }
    let display = if name.chars().any(|c| c.is_uppercase() || c == ' ') {
        name.trim().to_owned()
    } else {
        slug.split('-')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    Ok((slug, display))
}

fn write_plugin(dir: &Path, name: &str, template: &'static Template) -> Result<Created> {
    let (slug, display) = names_of(name)?;
    let author = std::env::var("VODO_AUTHOR")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "Plugin Author".into());
    let fill = |text: &str| {
        text.replace("{{slug}}", &slug)
            .replace("{{crate}}", &slug.replace('-', "_"))
            .replace("{{name}}", &json_text(&display))
            .replace("{{author}}", &json_text(&author))
    };
    let mut files: Vec<(String, String)> = COMMON
        .iter()
        .chain(template.files)
        .map(|(path, text)| ((*path).to_owned(), fill(text)))
        .collect();
    files.push((format!("{PDK_DIR}/Cargo.toml"), vendored_manifest()));
    files.push((format!("{PDK_DIR}/src/lib.rs"), PDK_LIB.to_owned()));
    files.push((format!("{PDK_DIR}/wit/plugin.wit"), PDK_WIT.to_owned()));
    // The manifest the template made must be one the platform takes.
    if let Some((_, manifest)) = files.iter().find(|(p, _)| p == "plugin.json") {
        Manifest::parse(manifest).map_err(|e| {
            anyhow::anyhow!(
                "the `{}` template made an invalid plugin.json: {e}",
                template.name
            )
        })?;
    }
    let taken: Vec<&str> = files
        .iter()
        .map(|(p, _)| p.as_str())
        .filter(|p| dir.join(p).exists())
        .collect();
    if !taken.is_empty() {
        bail!(
            "`{}` already has {}: nothing was written; run this in an empty folder, or move them away",
            dir.display(),
            taken.join(", ")
        );
    }
    for (path, text) in &files {
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot make `{}`", parent.display()))?;
        }
        std::fs::write(&file, text)
            .with_context(|| format!("cannot write `{}`", file.display()))?;
    }
    Ok(Created {
        dir: dir.to_path_buf(),
        slug,
        template: template.name,
        files: files.into_iter().map(|(p, _)| p).collect(),
    })
}

/// `s` as the inside of a JSON string (the templates put names in
/// plugin.json and in Rust doc comments, where this is harmless).
fn json_text(s: &str) -> String {
    let quoted = serde_json::Value::String(s.to_owned()).to_string();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(&quoted)
        .to_owned()
}

/// The kit's Cargo.toml with the workspace's values written in.
fn vendored_manifest() -> String {
    let mut out = format!(
        "# vodo-pdk {}, vendored by `vodo plugin:create`.\n",
        env!("CARGO_PKG_VERSION")
    );
    for line in PDK_MANIFEST.lines() {
        let line = match line.trim() {
            "version.workspace = true" => format!("version = \"{}\"", env!("CARGO_PKG_VERSION")),
            "edition.workspace = true" => "edition = \"2024\"".to_owned(),
            "rust-version.workspace = true" => {
                format!("rust-version = \"{}\"", env!("CARGO_PKG_RUST_VERSION"))
            }
            "license.workspace = true" => format!("license = \"{}\"", env!("CARGO_PKG_LICENSE")),
            "publish.workspace = true" => "publish = false".to_owned(),
            _ => line.to_owned(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_slugs_and_display_names() {
        let n = |s| names_of(s).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            n("gift-messages"),
            ("gift-messages".into(), "Gift Messages".into())
        );
        assert_eq!(
            n("Gift Messages"),
            ("gift-messages".into(), "Gift Messages".into())
        );
        assert!(names_of("!!").is_err());
    }

    #[test]
    fn the_vendored_kit_has_no_workspace_fields() {
        let m = vendored_manifest();
        assert!(!m.contains(".workspace"), "{m}");
        assert!(m.contains("name = \"vodo-pdk\""));
        assert!(m.contains("wit-bindgen"));
    }
}
