//! The distributed configuration store (etcd v3): [`model`] holds the key layout and
//! value formats, [`etcd`] the client that reads and writes them.

pub mod etcd;
pub mod model;
