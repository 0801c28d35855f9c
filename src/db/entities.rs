//! sea-orm entity for the `labellings` table (the `jobs` row lives with the queue, in `queue/job.rs`).

pub mod labelling {
    use sea_orm::entity::prelude::*;

    /// Also the API's view of a labelling (SPEC §5 field names).
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, serde::Serialize)]
    #[sea_orm(table_name = "labellings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub labelling_id: Uuid,
        pub job_id: Uuid,
        pub spectrum_filename: String,
        pub spectrum_set: String,
        pub sequence_iteration: i32,
        pub model_prediction: Option<String>,
        pub user_label: Option<String>,
        pub user_comment: Option<String>,
        /// Order within the job's list (the job's own order, e.g. most uncertain first).
        #[serde(skip)]
        pub position: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
