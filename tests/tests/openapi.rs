//! The REST API describes itself at /api/v1/openapi.json (generated from the handlers that serve it):
//! the description is valid OpenAPI, every operation in it is served, and every error, from a bad
//! parameter to an unknown path, has the same JSON shape.

use std::process::Command;

use gpucost_e2e::{Collector, free_port};
use serde_json::Value;

fn call(c: &Collector, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let url = c.http(path);
    let mut resp = match (method, body) {
        ("get", _) => agent.get(&url).call(),
        ("delete", _) => agent.delete(&url).call(),
        ("post", None) => agent.post(&url).send_empty(),
        ("put", Some(b)) => agent.put(&url).header("Content-Type", "application/json").send(b.to_string()),
        ("post", Some(b)) => agent.post(&url).header("Content-Type", "application/json").send(b.to_string()),
        _ => agent.put(&url).send_empty(),
    }
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_json().unwrap_or(Value::Null))
}

#[test]
fn the_openapi_description_is_valid_and_every_operation_in_it_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start_with(&dir.path().join("l.db"), free_port(), free_port(), &[], &[]);
    let (status, spec) = c.get("/api/v1/openapi.json");
    assert_eq!(status, 200);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."), "{spec}");
    let paths = spec["paths"].as_object().unwrap();
    for expected in [
        "/api/v1/usage",
        "/api/v1/costs",
        "/api/v1/chargeback",
        "/api/v1/budgets/{name}",
        "/api/v1/budgets/status",
        "/api/v1/periods/{period}/close",
        "/api/v1/fleet",
        "/api/v1/live",
        "/api/v1/backstage/group-daily-cost",
        "/metrics",
    ] {
        assert!(paths.contains_key(expected), "{expected} is not described");
    }

    // Every described operation is served (a 404 from the router says "no such endpoint").
    for (path, ops) in paths {
        let concrete = path.replace("{name}", "probe").replace("{period}", "2020-01");
        for method in ops.as_object().unwrap().keys() {
            if concrete == "/api/v1/live" {
                continue; // a stream that does not end; tests/tests/observability.rs reads it
            }
            let (status, body) = call(&c, method, &concrete, (method == "put").then_some("{}"));
            let text = body["error"].as_str().unwrap_or_default();
            assert!(
                status != 405 && !text.starts_with("no such endpoint"),
                "{method} {path} is described but not served: {status} {body}"
            );
            let declared: Vec<&String> = ops[method]["responses"].as_object().unwrap().keys().collect();
            assert!(
                declared.contains(&&status.to_string()),
                "{method} {path} answered {status}, declares {declared:?}"
            );
        }
    }

    // A real OpenAPI validator agrees (PyPI openapi-spec-validator, installed by scripts/test).
    if let Some(venv) =
        gpucost_e2e::installed_peer("openapi-spec-validator", "GPUCOST_MOTO_SERVER", "venv/bin/moto_server", "")
    {
        let file = dir.path().join("openapi.json");
        std::fs::write(&file, spec.to_string()).unwrap();
        let out =
            Command::new(venv.with_file_name("openapi-spec-validator")).arg(&file).output().expect("run the validator");
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_error_has_one_json_shape_that_says_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/catalog");
    let args = ["--catalog-dir", catalog.to_str().unwrap()];
    let c = Collector::start_with(&dir.path().join("l.db"), free_port(), free_port(), &args, &[]);
    for (method, path, body, status, needle) in [
        ("get", "/api/v1/nope", None, 404, "no such endpoint: GET /api/v1/nope"),
        ("post", "/api/v1/costs", None, 405, "/api/v1/costs does not take POST"),
        ("get", "/api/v1/costs?group_by=colour", None, 400, "group_by: unknown dimension \"colour\""),
        ("get", "/api/v1/usage?from=yesterday", None, 400, "from=\"yesterday\""),
        ("get", "/api/v1/chargeback?format=xml", None, 400, "format: unknown format \"xml\""),
        ("put", "/api/v1/budgets/b", Some("{\"scope\": {\"team\": \"a\"}}"), 400, "amount_usd: missing"),
        ("put", "/api/v1/budgets/b", Some("not json"), 400, "body: not JSON"),
        ("get", "/api/v1/budgets/none", None, 404, "no budget \"none\""),
        ("post", "/api/v1/periods/2026-13/close", None, 400, "period \"2026-13\""),
        ("get", "/api/v1/backstage/group-daily-cost", None, 400, "missing parameter \"group\""),
    ] {
        let (got, v) = call(&c, method, path, body);
        assert_eq!(got, status, "{method} {path}: {v}");
        let obj = v.as_object().unwrap_or_else(|| panic!("{method} {path}: not a JSON object: {v}"));
        assert_eq!(obj.len(), 1, "{method} {path}: {v}");
        assert!(obj["error"].as_str().unwrap().contains(needle), "{method} {path}: {v}");
    }
}
