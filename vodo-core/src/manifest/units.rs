//! The small value formats of a manifest: sizes (`50MB`), file types
//! (`json`, `.csv`, `application/json`), routes (`GET /status`), and the
//! helpers that echo user input safely in messages.

use serde_json::Value;

use super::{FileType, MAX_STORAGE_BYTES, Route};

/// The methods a route may name.
pub(super) const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// A JSON value's kind, for messages: `an array`, `a string`.
pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON value as a person reads it in a message, shortened.
pub(super) fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("`\"{}\"`", printable(s)),
        other => kind(other).to_owned(),
    }
}

/// User input made safe to echo: control characters escaped, long input cut.
pub(super) fn printable(s: &str) -> String {
    let mut out: String = s.chars().take(80).flat_map(char::escape_debug).collect();
    if s.chars().count() > 80 {
        out.push_str("...");
    }
    out
}

/// The slug a display name suggests: `Order Notifier` -> `order-notifier`
/// (lowercase ASCII letters and digits, words joined by `-`, no leading
/// digit; at most 64 characters of the name are read). It may come out
/// shorter than the 3 characters a slug needs.
///
/// ```
/// assert_eq!(vodo_core::manifest::slugify("Order Notifier!"), "order-notifier");
/// ```
pub fn slugify(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().take(64) {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out
        .trim_matches('-')
        .trim_start_matches(|c: char| c.is_ascii_digit());
    trimmed.trim_start_matches('-').to_owned()
}

/// Whether `s` is written like a route (`GET /status`), which belongs in
/// `routes`, not among the platform API resources of `api.endpoints`.
pub(super) fn looks_like_route(s: &str) -> bool {
    s.starts_with('/')
        || s.split_once(' ')
            .is_some_and(|(m, _)| METHODS.iter().any(|known| m.eq_ignore_ascii_case(known)))
}

/// Parses a route: a method, one space and a path such as `/orders/{id}/notes`.
pub(super) fn parse_route(s: &str) -> Result<Route, String> {
    let Some((method, path)) = s.split_once(' ') else {
        return Err("write a method and a path, such as `GET /status`".into());
    };
    if !METHODS.contains(&method) {
        return Err(format!(
            "`{}` is not a method: use `GET`, `POST`, `PUT`, `PATCH` or `DELETE`",
            printable(method)
        ));
    }
    if !path.starts_with('/') || path.len() > 200 {
        return Err("the path must start with `/` and be at most 200 characters".into());
    }
    if path.split('/').any(|seg| seg == ".." || seg == ".") {
        return Err("the path must not contain `.` or `..` segments".into());
    }
    if let Some(c) = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "/-_.~{}".contains(*c)))
    {
        return Err(format!(
            "`{}` is not allowed in a path: use letters, digits, `/`, `-`, `_`, `.`, `~` and `{{param}}`",
            c.escape_default()
        ));
    }
    for seg in path.split('/') {
        let braces = seg.matches(['{', '}']).count();
        let param = seg.len() > 2 && seg.starts_with('{') && seg.ends_with('}') && braces == 2;
        if braces > 0 && !param {
            return Err(format!(
                "`{}` is not a parameter: a parameter is a whole segment such as `{{id}}`",
                printable(seg)
            ));
        }
    }
    Ok(Route {
        method: method.to_owned(),
        path: path.to_owned(),
    })
}

/// Parses a file type: a media type (`application/json`, `image/*`), or an
/// extension written bare as the roadmap writes it (`json`) or with its dot
/// (`.json`).
pub(super) fn parse_file_type(s: &str) -> Result<FileType, String> {
    let token = |t: &str| {
        !t.is_empty()
            && t.len() <= 127
            && t.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$&-^_.+".contains(&b))
    };
    if !s.contains('/') {
        let ext = s.strip_prefix('.').unwrap_or(s);
        if !ext.is_empty()
            && ext.len() <= 16
            && ext
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Ok(FileType::Extension(ext.to_owned()));
        }
        return Err(
            "an extension is up to 16 lower-case letters or digits, such as `json` or `.csv`; a media type is written `application/json`".into(),
        );
    }
    match s.split_once('/') {
        Some(("*", _)) => Err("`*/*` would allow any file: list the types the plugin stores".into()),
        Some((t, "*")) if token(t) => Ok(FileType::MimeFamily(t.to_owned())),
        Some((t, sub)) if token(t) && token(sub) => Ok(FileType::Mime(s.to_owned())),
        _ => Err("write a media type such as `application/json` or `image/*`, or an extension such as `csv` (lower case)".into()),
    }
}

/// Parses a byte size: a whole number of bytes, or a string such as `10MB`
/// (units `B`, `KB`, `MB`, `GB`, decimal, and `KiB`, `MiB`, `GiB`, binary).
pub(super) fn parse_size(v: &Value) -> Result<u64, String> {
    let hint = "write a size such as `\"10MB\"`, `\"512KiB\"` or a number of bytes";
    let bytes = match v {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| format!("`{n}` is not a whole, positive number of bytes: {hint}"))?,
        Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let mult: u64 = match unit.trim() {
                "" | "B" => 1,
                "KB" => 1_000,
                "MB" => 1_000_000,
                "GB" => 1_000_000_000,
                "KiB" => 1 << 10,
                "MiB" => 1 << 20,
                "GiB" => 1 << 30,
                other => {
                    return Err(format!("unknown unit `{}`: {hint}", printable(other)));
                }
            };
            let n: u64 = num.parse().map_err(|_| {
                format!(
                    "`{}` does not start with a whole number: {hint}",
                    printable(s)
                )
            })?;
            n.checked_mul(mult)
                .ok_or_else(|| format!("`{}` is too large", printable(s)))?
        }
        other => return Err(format!("expected a size, found {}: {hint}", kind(other))),
    };
    if bytes == 0 {
        return Err(format!(
            "a quota of zero bytes allows nothing: {hint}, or remove `storage`"
        ));
    }
    if bytes > MAX_STORAGE_BYTES {
        return Err(format!(
            "{bytes} bytes is more than the {MAX_STORAGE_BYTES} bytes (1 TiB) a plugin may ask for"
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size(&Value::from("512KiB")), Ok(524_288));
        assert_eq!(parse_size(&Value::from("1 GB")), Ok(1_000_000_000));
        assert_eq!(parse_size(&Value::from("50MB")), Ok(50_000_000));
        assert_eq!(parse_size(&Value::from(2048)), Ok(2048));
        assert!(parse_size(&Value::from(-1)).is_err());
        assert!(parse_size(&Value::from(1.5)).is_err());
        assert!(parse_size(&Value::from("99999999999999999999GB")).is_err());
        assert!(parse_size(&Value::from("2TiB")).is_err());
        assert!(parse_size(&Value::from("10 parsecs")).is_err());
    }

    #[test]
    fn file_types_bare_dotted_and_media() {
        for (input, expected) in [
            ("json", FileType::Extension("json".into())),
            (".csv", FileType::Extension("csv".into())),
            ("pdf", FileType::Extension("pdf".into())),
            ("image/*", FileType::MimeFamily("image".into())),
            (
                "application/json",
                FileType::Mime("application/json".into()),
            ),
        ] {
            assert_eq!(parse_file_type(input), Ok(expected), "{input}");
        }
        for bad in ["IMAGE/PNG", ".", "", "JSON", "*/*", "tar.gz", "a/"] {
            assert!(parse_file_type(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn routes() {
        let r = parse_route("POST /orders/{id}/notes").unwrap();
        assert_eq!(r.to_string(), "POST /orders/{id}/notes");
        for bad in [
            "GET",
            "FETCH /x",
            "get /x",
            "GET x",
            "GET /a/../b",
            "GET /a b",
            "GET /{id",
            "GET /x{id}",
            "GET /{}",
        ] {
            assert!(parse_route(bad).is_err(), "{bad}");
        }
        assert!(looks_like_route("GET /status"));
        assert!(looks_like_route("get /status"));
        assert!(looks_like_route("/status"));
        assert!(!looks_like_route("products"));
    }
}
