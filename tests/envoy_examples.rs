//! The files under `examples/` are what users copy, so each is checked here: the Envoy
//! bootstrap validates and, moved onto loopback, enforces `config/example.yaml` through quotad;
//! the Istio EnvoyFilter's fragments run in a real Envoy; every Kubernetes manifest parses, and
//! every rules file embedded in a ConfigMap compiles.

mod envoy_harness;

use std::path::Path;

use envoy_harness::{
    Envoy, envoy_filter_patch, envoy_or_skip, examples_dir, http_client, istio_bootstrap, localize,
    send, start_quotad, start_upstream, validate, yaml_documents, yaml_files,
};
use serde_json::Value;

fn example_rules() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.yaml");
    std::fs::read_to_string(path).expect("config/example.yaml")
}

#[test]
fn envoy_example_bootstrap_validates() {
    let Some(envoy) = envoy_or_skip("envoy_example_bootstrap_validates") else {
        return;
    };
    let bootstrap = examples_dir().join("envoy/envoy.yaml");
    validate(&envoy, &bootstrap)
        .unwrap_or_else(|error| panic!("examples/envoy/envoy.yaml:\n{error}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_example_enforces_the_example_rules() {
    let Some(envoy_bin) = envoy_or_skip("envoy_example_enforces_the_example_rules") else {
        return;
    };
    let (quotad, _clock) = start_quotad(&example_rules()).await;
    let upstream = start_upstream().await;
    let mut bootstrap = yaml_documents(&examples_dir().join("envoy/envoy.yaml")).remove(0);
    localize(
        &mut bootstrap,
        &[("app", upstream), ("quotad", quotad.grpc_addr())],
    );
    let envoy = Envoy::start(&envoy_bin, &bootstrap.to_string()).await;
    let client = http_client();
    let get = |path: &str, headers: &'static [(&'static str, &'static str)]| {
        let (client, url) = (client.clone(), envoy.url("ingress", path));
        async move { send(&client, "GET", &url, headers).await.status }
    };
    let mut statuses = Vec::new();
    for _ in 0..11 {
        statuses.push(get("/v1/orders", &[("x-plan", "starter"), ("x-api-key", "k_1")]).await);
    }
    assert_eq!(statuses[..10], [200; 10], "{}", envoy.log());
    assert_eq!(statuses[10], 429, "starter: 10 per minute");

    // Search has its own descriptor and, through vh_rate_limits INCLUDE, the plan's as well.
    let mut statuses = Vec::new();
    for _ in 0..11 {
        statuses.push(
            get(
                "/v1/search?q=a",
                &[("x-plan", "starter"), ("x-api-key", "k_2")],
            )
            .await,
        );
    }
    assert_eq!(statuses[10], 429, "search counts against the plan too");

    let mut statuses = Vec::new();
    for _ in 0..11 {
        statuses.push(
            get(
                "/v1/auth/sign_in",
                &[("x-plan", "starter"), ("x-api-key", "k_1")],
            )
            .await,
        );
    }
    assert_eq!(
        statuses[..10],
        [200; 10],
        "sign-in is per IP, not per exhausted key"
    );
    assert_eq!(statuses[10], 429, "sign-in: 10 per minute per IP");

    for _ in 0..3 {
        assert_eq!(
            get("/healthz", &[]).await,
            200,
            "health checks are whitelisted"
        );
    }
    drop(envoy);
    quotad.shutdown().await.expect("quotad stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_envoyfilter_fragments_run_in_envoy() {
    let Some(envoy_bin) = envoy_or_skip("istio_envoyfilter_fragments_run_in_envoy") else {
        return;
    };
    let istio = examples_dir().join("istio");
    let filters = yaml_documents(&istio.join("envoyfilter.yaml"));
    let filter = envoy_filter_patch(&filters, "HTTP_FILTER");
    let virtual_host = envoy_filter_patch(&filters, "VIRTUAL_HOST");
    let cluster =
        filter["typed_config"]["rate_limit_service"]["grpc_service"]["envoy_grpc"]["cluster_name"]
            .as_str()
            .expect("cluster_name")
            .to_owned();
    assert_eq!(cluster, "outbound|8081||quotad.quotad.svc.cluster.local");

    let rules = rules_in_configmaps(&yaml_documents(&istio.join("quotad.yaml")));
    let (quotad, _clock) = start_quotad(&rules[0]).await;
    let upstream = start_upstream().await;
    let bootstrap = istio_bootstrap(
        &filter,
        &virtual_host,
        &cluster,
        quotad.grpc_addr(),
        upstream,
    );
    let envoy = Envoy::start(&envoy_bin, &bootstrap.to_string()).await;
    let client = http_client();
    let url = envoy.url("gateway", "/productpage");
    let key = [("x-plan", "starter"), ("x-api-key", "k_1")];
    let mut statuses = Vec::new();
    for _ in 0..11 {
        statuses.push(send(&client, "GET", &url, &key).await.status);
    }
    assert_eq!(statuses[..10], [200; 10], "{}", envoy.log());
    assert_eq!(
        statuses[10], 429,
        "the gateway enforces quotad's starter plan"
    );
    drop(envoy);
    quotad.shutdown().await.expect("quotad stops cleanly");
}

/// The text of every `*.yaml` entry of every ConfigMap among `documents`.
fn rules_in_configmaps(documents: &[Value]) -> Vec<String> {
    documents
        .iter()
        .filter(|doc| doc["kind"] == "ConfigMap")
        .flat_map(|doc| doc["data"].as_object().cloned().unwrap_or_default())
        .filter(|(key, _)| key.ends_with(".yaml") || key.ends_with(".yml"))
        .map(|(_, value)| value.as_str().expect("ConfigMap data is text").to_owned())
        .collect()
}

#[test]
fn every_example_manifest_parses_and_embedded_rules_compile() {
    let mut rules_files = 0;
    for dir in ["kubernetes", "istio"] {
        for path in yaml_files(&examples_dir().join(dir)) {
            let shown = path.display().to_string();
            let documents = yaml_documents(&path);
            assert!(!documents.is_empty(), "{shown}: no document");
            for doc in &documents {
                assert!(
                    doc["apiVersion"].is_string(),
                    "{shown}: a document lacks apiVersion"
                );
                assert!(doc["kind"].is_string(), "{shown}: a document lacks kind");
                check_quotad_container(&shown, doc);
                check_kustomization(&path, doc);
            }
            for rules in rules_in_configmaps(&documents) {
                quotad::config::compile_str(&shown, &rules)
                    .unwrap_or_else(|errors| panic!("rules in {shown}:\n{errors}"));
                rules_files += 1;
            }
        }
    }
    assert!(
        rules_files >= 2,
        "the Kubernetes and Istio examples both carry rules"
    );
}

/// quotad's container reads its rules from the mounted directory and is probed on HTTP.
fn check_quotad_container(shown: &str, doc: &Value) {
    let containers = doc["spec"]["template"]["spec"]["containers"].as_array();
    let Some(quotad) = containers.and_then(|all| all.iter().find(|c| c["name"] == "quotad")) else {
        return;
    };
    let args = quotad["args"].to_string();
    assert!(
        args.contains(r#""--config","/etc/quotad""#),
        "{shown}: args {args}"
    );
    if doc["kind"] == "Deployment" && quotad["readinessProbe"].is_object() {
        assert_eq!(
            quotad["readinessProbe"]["httpGet"]["path"], "/ready",
            "{shown}"
        );
        assert_eq!(
            quotad["livenessProbe"]["httpGet"]["path"], "/live",
            "{shown}"
        );
        assert!(
            quotad["resources"]["requests"].is_object(),
            "{shown}: resource requests"
        );
    }
}

/// Every file a kustomization lists exists next to it.
fn check_kustomization(path: &Path, doc: &Value) {
    if doc["kind"] != "Kustomization" {
        return;
    }
    let dir = path.parent().expect("parent dir");
    let listed = doc["resources"].as_array().into_iter().flatten();
    let patches = doc["patches"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| &p["path"]);
    for entry in listed.chain(patches) {
        let entry = entry.as_str().expect("path is text");
        assert!(
            dir.join(entry).exists(),
            "{}: {entry} is missing",
            path.display()
        );
    }
}
