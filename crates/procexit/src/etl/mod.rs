//! Offline reader of Windows `.etl` trace files (pure; runs on any OS).
