/** The task database could not be reached or refused the store; the message names it (password redacted) and the way out. */
export class TaskDatabaseError extends Error {}
