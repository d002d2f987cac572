/*
 * bgw_start.c: a test-only helper for tests/bgworker/run.sh. It registers a dynamic
 * background worker that runs a given entry point of the pgq library with a given
 * argument, the way a buggy or malicious caller (or a second copy of a supervisor)
 * could, so the scenarios can check that pgq's workers refuse what is not theirs.
 * Built into the test's scratch directory and loaded by absolute path; never installed.
 */
#include "postgres.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "utils/builtins.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(pgq_test_start_bgworker);

/* pgq_test_start_bgworker(entry text, arg int8, type text) returns int4:
 * the new process's pid, or NULL if it stopped before the postmaster reported it */
Datum
pgq_test_start_bgworker(PG_FUNCTION_ARGS)
{
	BackgroundWorker w;
	BackgroundWorkerHandle *handle;
	pid_t		pid;
	char	   *entry = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *type = text_to_cstring(PG_GETARG_TEXT_PP(2));

	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_RecoveryFinished;
	w.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(w.bgw_library_name, BGW_MAXLEN, "pgq");
	snprintf(w.bgw_function_name, BGW_MAXLEN, "%s", entry);
	snprintf(w.bgw_name, BGW_MAXLEN, "%s (test start)", type);
	snprintf(w.bgw_type, BGW_MAXLEN, "%s", type);
	w.bgw_main_arg = Int64GetDatum(PG_GETARG_INT64(1));
	w.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&w, &handle))
		ereport(ERROR, (errmsg("could not register a background worker")));
	if (WaitForBackgroundWorkerStartup(handle, &pid) != BGWH_STARTED)
		PG_RETURN_NULL();
	PG_RETURN_INT32(pid);
}
