//! localcluster
