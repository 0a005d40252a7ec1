//! What the CLI's end-to-end tests do as a person with a browser would: sign
//! in to the console, and approve or deny the sign-in `vodo login` links to.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};

/// A client that reads answers of any status.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// Signs in to the server at `base` as `email`: the session cookie and its
/// CSRF token.
pub fn sign_in(base: &str, email: &str, password: &str) -> (String, String) {
    let mut r = agent()
        .post(&format!("{base}/v1/session"))
        .send_json(json!({ "email": email, "password": password }))
        .unwrap();
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    let status = r.status().as_u16();
    let v: Value = r.body_mut().read_json().unwrap_or(Value::Null);
    assert_eq!(status, 200, "signing in as {email}: {v}");
    (cookie.unwrap(), v["csrf"].as_str().unwrap().to_owned())
}

/// Opens the device sign-in `page` signed in with `cookie`, reads the code
/// it shows and presses `decision`: the answer's status and HTML, and the
/// code the page showed (to compare with the terminal's).
pub fn decide_device(page: &str, cookie: &str, decision: &str) -> (u16, String, String) {
    let mut r = agent().get(page).header("cookie", cookie).call().unwrap();
    let html = r.body_mut().read_to_string().unwrap();
    assert_eq!(r.status().as_u16(), 200, "{html}");
    let field = |name: &str| {
        html.split(&format!("name=\"{name}\" value=\""))
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_else(|| panic!("no {name} on the page: {html}"))
            .to_owned()
    };
    let (code, csrf) = (field("user_code"), field("csrf"));
    let action = page.split('?').next().unwrap();
    let mut r = agent()
        .post(action)
        .header("cookie", cookie)
        .send_form([
            ("user_code", code.as_str()),
            ("csrf", csrf.as_str()),
            ("decision", decision),
        ])
        .unwrap();
    let status = r.status().as_u16();
    (status, r.body_mut().read_to_string().unwrap(), code)
}
