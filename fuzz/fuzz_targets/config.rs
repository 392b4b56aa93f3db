//! Any bytes as a rules file: compiling must return rules or located errors, never panic,
//! hang or exhaust memory (serde-saphyr's budget bounds the work).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(errors) = quotad::config::compile_str("fuzz.yaml", &text) {
        // Rendering the errors is part of what an operator sees; it must not panic either.
        let _ = errors.to_string();
    }
});
