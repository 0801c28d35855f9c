//! The files domain's view of storage paths: a refused path is a 422 naming its field.

use crate::{error::ApiError, storage::PathError};

impl From<PathError> for ApiError {
    fn from(e: PathError) -> Self {
        let field = match e {
            PathError::Escapes(_) => "parent_dir_path",
            PathError::BadName(_) => "filename",
        };
        ApiError::invalid(field, e.to_string())
    }
}
