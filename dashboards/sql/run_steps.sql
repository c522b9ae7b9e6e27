-- run_steps: the step timeline of one run, every attempt, with errors and delay resumes.
--
-- Parameters:
--   account      String                  the tenant (runlens sql: --account)
--   run_id       String                  the run
-- Columns:
--   step_index            position in the workflow (0-based)
--   step_id               the step
--   step_name             its name
--   step_type             trigger, action, condition or delay
--   attempt               1-based attempt
--   status                success, failed, skipped or running
--   started_at            attempt start
--   finished_at           attempt end
--   duration_ms           attempt duration
--   error_code            error code when failed
--   error_class           error class when failed
--   error_message         error message when failed
--   error_stack_trace     stack trace when failed
--   error_suggested_fix   suggested fix when failed
--   input                 input data (JSON)
--   output                output data (JSON)
--   condition_result      condition steps: the result
--   branch                condition steps: the branch taken
--   action_kind           action steps: email, tag, webhook, crm_sync...
--   target                action steps: the entity acted on
--   scheduled_resume_at   delay steps: when the run was due to resume
--   resumed_at            delay steps: when it actually resumed
--   resume_late_ms        delay steps: resumed_at - scheduled_resume_at
SELECT step_index, step_id, step_name, step_type, attempt, status, started_at, finished_at, duration_ms,
       error_code, error_class, error_message, error_stack_trace, error_suggested_fix, input, output,
       condition_result, branch, action_kind, target, scheduled_resume_at, resumed_at,
       dateDiff('millisecond', scheduled_resume_at, resumed_at) AS resume_late_ms
FROM steps
WHERE account_id = {account:String} AND run_id = {run_id:String}
ORDER BY step_index, attempt, started_at
