//! Boards: named collections of a user's images (an image may be on many).

use chrono::Utc;

use super::{Gallery, GalleryError, GalleryResult, invalid};
use crate::store::images::{self as img, BoardRow, BoardSummary};
use crate::store::{Page, new_id};

pub const MAX_NAME: usize = 100;
pub const MAX_DESCRIPTION: usize = 1000;
/// Boards one user may have.
pub const MAX_BOARDS: usize = 500;
/// Most images one call adds to a board.
pub const MAX_IMAGES_PER_CALL: usize = 100;

/// Counted and checked for control characters as sent (the API document's
/// rule), stored trimmed.
fn check_name(raw: &str) -> GalleryResult<String> {
    let name = raw.trim();
    if name.is_empty() || raw.chars().count() > MAX_NAME || raw.chars().any(char::is_control) {
        return Err(invalid("name", format!("1 to {MAX_NAME} characters")));
    }
    Ok(name.to_owned())
}

fn check_description(d: &str) -> GalleryResult<String> {
    if d.chars().count() > MAX_DESCRIPTION {
        return Err(invalid(
            "description",
            format!("at most {MAX_DESCRIPTION} characters"),
        ));
    }
    Ok(d.trim().to_owned())
}

impl Gallery {
    /// The user's board, or `NotFound` (also for another user's).
    pub async fn board(&self, user_id: &str, id: &str) -> GalleryResult<BoardRow> {
        img::get_board(&self.db, id)
            .await?
            .filter(|b| b.user_id == user_id)
            .ok_or(GalleryError::NotFound)
    }

    pub async fn boards(
        &self,
        user_id: &str,
        page: Page,
    ) -> GalleryResult<(Vec<BoardSummary>, i64)> {
        Ok(img::list_boards(&self.db, user_id, page).await?)
    }

    pub async fn create_board(
        &self,
        user_id: &str,
        name: &str,
        description: Option<&str>,
    ) -> GalleryResult<BoardRow> {
        let (name, description) = (
            check_name(name)?,
            check_description(description.unwrap_or(""))?,
        );
        if img::count_boards(&self.db, user_id).await? >= MAX_BOARDS as i64 {
            return Err(GalleryError::Limit {
                what: "boards",
                max: MAX_BOARDS,
            });
        }
        let now = Utc::now();
        let board = BoardRow {
            id: new_id(),
            user_id: user_id.to_owned(),
            name,
            description,
            created_at: now,
            updated_at: now,
        };
        img::insert_board(&self.db.write().await, &board).await?;
        Ok(board)
    }

    pub async fn update_board(
        &self,
        user_id: &str,
        id: &str,
        name: Option<&str>,
        description: Option<&str>,
    ) -> GalleryResult<BoardSummary> {
        let mut board = self.board(user_id, id).await?;
        if let Some(n) = name {
            board.name = check_name(n)?;
        }
        if let Some(d) = description {
            board.description = check_description(d)?;
        }
        board.updated_at = Utc::now();
        img::update_board(&self.db.write().await, &board).await?;
        // As the list shows it: its image count and cover.
        img::board_summary(&self.db, id)
            .await?
            .ok_or(GalleryError::NotFound)
    }

    /// Deletes a board; its images stay in the gallery.
    pub async fn delete_board(&self, user_id: &str, id: &str) -> GalleryResult<()> {
        self.board(user_id, id).await?;
        img::delete_board(&self.db.write().await, id).await?;
        self.revisions.bump(user_id);
        Ok(())
    }

    /// Adds images to a board, all or none: an id that is not the user's
    /// image refuses the whole call (the board exists: it is the request
    /// that names what is not there). Images already on it are fine.
    pub async fn add_to_board(
        &self,
        user_id: &str,
        id: &str,
        image_ids: &[String],
    ) -> GalleryResult<()> {
        if image_ids.is_empty() || image_ids.len() > MAX_IMAGES_PER_CALL {
            return Err(invalid(
                "image_ids",
                format!("1 to {MAX_IMAGES_PER_CALL} ids"),
            ));
        }
        self.board(user_id, id).await?;
        let mut ids = image_ids.to_vec();
        ids.sort();
        ids.dedup();
        let mut tx = self.db.begin().await?;
        if img::count_owned_in(&mut tx, user_id, &ids).await? != ids.len() {
            return Err(invalid("image_ids", "not all of them are images of yours"));
        }
        let now = Utc::now();
        for image in &ids {
            img::add_to_board(&mut tx, id, image, now).await?;
        }
        tx.commit().await?;
        self.revisions.bump(user_id);
        Ok(())
    }

    pub async fn remove_from_board(
        &self,
        user_id: &str,
        id: &str,
        image_id: &str,
    ) -> GalleryResult<()> {
        self.board(user_id, id).await?;
        if !img::remove_from_board(&self.db.write().await, id, image_id).await? {
            return Err(GalleryError::NotFound);
        }
        self.revisions.bump(user_id);
        Ok(())
    }
}
