//! sea-orm entities for the `jobs` and `labellings` tables.

pub mod job {
    use sea_orm::entity::prelude::*;

    use crate::jobs::model::Phase;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "jobs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub job_id: Uuid,
        #[sea_orm(column_name = "type")]
        pub job_type: String,
        pub label: String,
        pub description: Option<String>,
        pub phase: Phase,
        pub dir_path: String,
        pub config: Option<Json>,
        pub error: Option<String>,
        pub parent_job_id: Option<Uuid>,
        pub created_at: DateTimeUtc,
        pub started_at: Option<DateTimeUtc>,
        pub ended_at: Option<DateTimeUtc>,
        pub execution_duration: Option<f64>,
        /// Incremented by every claim; writes from an older attempt are refused.
        pub attempt: i32,
        pub worker_id: Option<String>,
        pub heartbeat_ms: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

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
