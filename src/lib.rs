#![forbid(unsafe_code)]
pub mod auth;
pub mod config;
pub mod dialect;
pub mod directory;
pub mod phone;
pub mod screen;
pub mod secret;
pub mod store;
