//! Accounts as people and scripts meet them (SPEC §11): the login page and `/api/auth`, API
//! tokens (`/api/tokens`, the Tokens page), the audit trail (`/api/audit`, its page) and a
//! health check. Who a request is and what it may do is `auth`.

pub mod routes;
