//! Storage error type: what can go wrong below the SQL layer.

/// Errors raised by the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// RocksDB reported an error (I/O, corruption, options).
    #[error("storage engine error: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// Bytes on disk do not decode; the message says which record.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// Catalog metadata could not be (de)serialized.
    #[error("catalog encoding error: {0}")]
    CatalogEncoding(#[from] serde_json::Error),
    /// The ingest writer is gone (server shutting down).
    #[error("the storage writer has stopped; the server is shutting down")]
    WriterClosed,
    /// File-system error outside RocksDB (data directory, SST staging).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Result alias for storage operations.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
