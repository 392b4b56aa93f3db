//! Runs the reflection module's own tests until `src/service/mod.rs` declares the module; then
//! the library's unit tests cover it and this file can go.

#[path = "../src/service/reflection.rs"]
#[allow(dead_code, unreachable_pub)]
mod reflection;
