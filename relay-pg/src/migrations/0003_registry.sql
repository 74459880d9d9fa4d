-- Schema v3: the device registry of a cluster relay (devices, revocations, enrollments),
-- shared by every node instead of each directory's devices.toml. One row: the registry
-- as the relay serialises it, sealed under the data key (device names are in it), with a
-- version every change increments; nodes poll the version to follow revocations.
CREATE TABLE device_registry (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL,
    sealed  BYTEA NOT NULL
);
