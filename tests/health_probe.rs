//! `podium health`, the container's HEALTHCHECK: exit status 0 when the
//! server answers, 1 with an error naming the address otherwise.

mod common;

use std::net::TcpListener;
use std::process::{Command, Output};

use common::{Server, BIN};

/// Runs `podium health ARGS…` with the environment of a container whose
/// server listens on `listen` (PODIUM_LISTEN, as the image sets it).
fn health(listen: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("health")
        .args(args)
        .env("PODIUM_LISTEN", listen)
        .env_remove("PODIUM_TLS_CERT")
        .env_remove("PODIUM_HEALTH_READY")
        .output()
        .expect("run podium health")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_live_server_passes_and_a_wildcard_listen_address_is_probed_on_loopback() {
    let s = Server::demo(&[]);
    let addr = s.base.trim_start_matches("http://");
    let out = health(addr, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("/v2/health/live: 200"),
        "{}",
        text(&out)
    );

    // The image's default: the server listens on 0.0.0.0, the probe asks loopback.
    let port = addr.rsplit(':').next().unwrap();
    let out = health(&format!("0.0.0.0:{port}"), &[]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn nothing_listening_fails_naming_the_address() {
    // A port that was free a moment ago and is closed now.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let out = health(&addr, &["--timeout-secs", "5"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = text(&out);
    assert!(
        err.contains(&format!("GET http://{addr}/v2/health/live failed"))
            && err.contains("is `podium serve` running"),
        "{err}"
    );
}

#[test]
fn ready_fails_while_an_aliased_model_cannot_load() {
    let dir = tempfile::tempdir().unwrap();
    let reg = common::demo_registry(dir.path());
    let junk = common::unloadable_model(dir.path());
    assert_eq!(common::register_path(&reg, "broken", &junk), 1);
    common::set_alias(&reg, "broken", "champion", 1);
    let s = Server::start(&reg, &[]);
    let addr = s.base.trim_start_matches("http://");

    let live = health(addr, &[]);
    assert!(live.status.success(), "{}", text(&live));
    let ready = health(addr, &["--ready"]);
    assert_eq!(ready.status.code(), Some(1), "{}", text(&ready));
    assert!(
        text(&ready).contains(&format!(
            "GET http://{addr}/v2/health/ready answered HTTP 503"
        )),
        "{}",
        text(&ready)
    );
}
