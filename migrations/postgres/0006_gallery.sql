-- Gallery, boards, shares and the storage counter. Keep in step with
-- migrations/sqlite/0006_gallery.sql.

ALTER TABLE boards ADD COLUMN description TEXT NOT NULL DEFAULT '';

-- The thumbnail's bytes count against storage with the original.
ALTER TABLE images ADD COLUMN thumb_size BIGINT NOT NULL DEFAULT 0;
-- A public share link ends then (NULL: until revoked).
ALTER TABLE images ADD COLUMN share_expires_at TIMESTAMPTZ;
CREATE UNIQUE INDEX images_share_token ON images (share_token);

-- The gallery's sorts, with the id as the tie-breaker.
DROP INDEX images_user;
CREATE INDEX images_user_created ON images (user_id, created_at, id);
CREATE INDEX images_user_size ON images (user_id, file_size, id);
CREATE INDEX board_images_image ON board_images (image_id);

-- Bytes a user stores, kept by the transactions that add or remove them
-- (the quota check on the enqueue path reads one row, never a SUM).
CREATE TABLE storage_usage (
    user_id     TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    -- Originals and thumbnails of gallery images.
    image_bytes BIGINT NOT NULL DEFAULT 0,
    -- Inputs of generation requests.
    other_bytes BIGINT NOT NULL DEFAULT 0,
    CONSTRAINT storage_usage_nonneg CHECK (image_bytes >= 0 AND other_bytes >= 0)
);
INSERT INTO storage_usage (user_id, image_bytes, other_bytes)
    SELECT user_id, SUM(file_size), 0 FROM images GROUP BY user_id;
