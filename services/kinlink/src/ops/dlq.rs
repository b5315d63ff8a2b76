//! `kinlink ops dlq list|show|replay`: the dead letters and their replay live in
//! `kinlink_console::dead_letters`, shared with the console's dead-letter page.

pub use kinlink_console::dead_letters::*;
