//! The PostgreSQL layer every stage may use, and which uses none of them:
//! how to reach a server (connection strings, services, passfiles, TLS),
//! the session client and its error classes, quoting, how SQL text splits
//! into statements and whether they may run in one transaction, and the
//! client tools (pg_dump, pg_restore) found on this machine.

pub mod activity;
pub mod db;
pub mod password;
pub mod pgpass;
pub mod quote;
pub mod service;
pub mod statements;
pub mod tls;
pub mod tool_url;
pub mod tools;
