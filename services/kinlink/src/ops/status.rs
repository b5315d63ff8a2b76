//! `kinlink ops status`: the numbers live in `kinlink_console::status`, shared with the
//! metrics sampler and the console's stage status page.

pub use kinlink_console::status::*;
