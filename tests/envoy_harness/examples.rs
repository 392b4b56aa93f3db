//! Helpers that turn the files under `examples/` into things a test can check: every YAML
//! document parsed as JSON values, the example Envoy bootstrap moved onto loopback ports, and
//! a bootstrap assembled from the Istio EnvoyFilter's patch values, so the fragments a user
//! copies are run by the same Envoy the other tests use.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// The repository's `examples/` directory.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// Every `*.yaml`/`*.yml` file under `dir`, recursively, sorted.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read examples dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
            {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Every document of a YAML file, as JSON values; a parse error fails the test.
pub fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("read yaml");
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn socket(addr: SocketAddr) -> Value {
    json!({ "socket_address": { "address": addr.ip().to_string(), "port_value": addr.port() } })
}

fn loopback_any_port() -> Value {
    json!({ "socket_address": { "address": "127.0.0.1", "port_value": 0 } })
}

/// Moves a bootstrap onto loopback: admin and listeners on port 0, and each named cluster to a
/// single static endpoint.
pub fn localize(bootstrap: &mut Value, clusters: &[(&str, SocketAddr)]) {
    bootstrap["admin"]["address"] = loopback_any_port();
    let resources = &mut bootstrap["static_resources"];
    for listener in resources["listeners"].as_array_mut().expect("listeners") {
        listener["address"] = loopback_any_port();
    }
    for cluster in resources["clusters"].as_array_mut().expect("clusters") {
        let name = cluster["name"].as_str().expect("cluster name").to_owned();
        if let Some((_, addr)) = clusters.iter().find(|(wanted, _)| *wanted == name) {
            cluster["type"] = json!("STATIC");
            cluster["load_assignment"] = json!({
                "cluster_name": name,
                "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket(*addr) } }] }],
            });
        }
    }
}

/// A gateway-like bootstrap built from the Istio patches: `filter` inserted before the router,
/// `virtual_host` merged into the one virtual host, `rate_limit_cluster` (Istio's name for the
/// quotad Service) pointing at `quotad`, and every route forwarding to `upstream`.
pub fn istio_bootstrap(
    filter: &Value,
    virtual_host: &Value,
    rate_limit_cluster: &str,
    quotad: SocketAddr,
    upstream: SocketAddr,
) -> Value {
    let mut host = json!({
        "name": "gateway",
        "domains": ["*"],
        "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": "upstream" } }],
    });
    for (key, value) in virtual_host
        .as_object()
        .expect("virtual host patch is a map")
    {
        host[key] = value.clone();
    }
    let hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "gateway",
        "route_config": { "virtual_hosts": [host] },
        "http_filters": [
            filter,
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                },
            },
        ],
    });
    let static_cluster = |name: &str, addr: SocketAddr| {
        json!({
            "name": name,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {
                "cluster_name": name,
                "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket(addr) } }] }],
            },
        })
    };
    let mut quotad_cluster = static_cluster(rate_limit_cluster, quotad);
    quotad_cluster["typed_extension_protocol_options"] = json!({
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": { "http2_protocol_options": {} },
        },
    });
    json!({
        "admin": { "address": loopback_any_port() },
        "static_resources": {
            "listeners": [{
                "name": "gateway",
                "address": loopback_any_port(),
                "filter_chains": [{ "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": hcm,
                }] }],
            }],
            "clusters": [static_cluster("upstream", upstream), quotad_cluster],
        },
    })
}

/// The `patch.value` of the first config patch applied to `apply_to` in any EnvoyFilter.
pub fn envoy_filter_patch(documents: &[Value], apply_to: &str) -> Value {
    documents
        .iter()
        .filter(|doc| doc["kind"] == "EnvoyFilter")
        .flat_map(|doc| {
            doc["spec"]["configPatches"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|patch| patch["applyTo"] == apply_to)
        .map(|patch| patch["patch"]["value"].clone())
        .unwrap_or_else(|| panic!("no {apply_to} patch"))
}
