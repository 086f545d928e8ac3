/*
 * p11fault shim: a PKCS#11 v2.40 module that forwards to a real module
 * (SoftHSM2 in the tests) and injects the answers real HSMs give and
 * SoftHSM2 never gives on demand: CKR_SESSION_COUNT when sessions run out,
 * CKR_DEVICE_MEMORY, CKR_DEVICE_REMOVED, CKR_PIN_LOCKED and so on.
 *
 * The Go package internal/p11fault compiles this file and drives it; see
 * p11fault.go for the API tests use.
 *
 * Environment:
 *   P11FAULT_MODULE   the real module; read by the first C_GetFunctionList,
 *                     and checked again at each C_Initialize.
 *   P11FAULT_CONTROL  the control file; read at C_Initialize. Counters go to
 *                     the file "<control>.stats".
 *
 * Control file, one directive a line, re-read whenever stat(2) shows it
 * changed (the Go side gives each version a new inode and a new mtime):
 *   limit N                 at most N sessions open through the shim
 *   fail FUNC CODE TIMES ID answer CODE (hex) instead of FUNC's answer, for
 *                           the next TIMES calls (0: every call); ID tells
 *                           a new rule from a re-read of the same one
 *   delay FUNC MS           hold each call of FUNC for MS milliseconds
 *
 * The stats file is a fixed binary layout (struct stats) mapped shared, so
 * every call "writes" it for the price of a few memory stores, and so the
 * counters, and how often each fail rule has fired, survive C_Finalize and
 * the shim being unloaded and loaded again: crypto11 dlcloses a module when
 * its last context closes, and a "fail once" rule must not re-arm then.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* miekg/pkcs11's copy of the OASIS headers leaves these to the includer. */
#define CK_PTR *
#define CK_DEFINE_FUNCTION(returnType, name) returnType name
#define CK_DECLARE_FUNCTION(returnType, name) returnType name
#define CK_DECLARE_FUNCTION_POINTER(returnType, name) returnType(*name)
#define CK_CALLBACK_FUNCTION(returnType, name) returnType(*name)
#ifndef NULL_PTR
#define NULL_PTR 0
#endif
#include "pkcs11.h"

/* The wrapped functions. Everything else in the list goes straight to the
 * real module. The Go side keeps the same list (p11fault.Functions). */
#define WRAPPED(X)                                                           \
	X(C_Initialize) X(C_Finalize) X(C_GetInfo) X(C_GetSlotList)          \
	X(C_GetSlotInfo) X(C_GetTokenInfo) X(C_GetMechanismList)             \
	X(C_GetMechanismInfo) X(C_OpenSession) X(C_CloseSession)             \
	X(C_CloseAllSessions) X(C_GetSessionInfo) X(C_Login) X(C_Logout)     \
	X(C_CreateObject) X(C_DestroyObject) X(C_GetAttributeValue)          \
	X(C_SetAttributeValue) X(C_FindObjectsInit) X(C_FindObjects)         \
	X(C_FindObjectsFinal) X(C_SignInit) X(C_Sign) X(C_SignUpdate)        \
	X(C_SignFinal) X(C_GenerateKeyPair) X(C_GenerateRandom)

#define ENUM(name) F_##name,
enum { WRAPPED(ENUM) NFUNCS };
#define NAME(name) #name,
static const char *const names[NFUNCS] = { WRAPPED(NAME) };

/* The stats file. Its layout is read by p11fault.go: change both. */
#define STATS_MAGIC "p11flt1"
struct fn_stats {
	char name[32];
	uint64_t calls;      /* every call, faulted or not */
	uint64_t faults;     /* answers made up by the shim (rules, limit) */
	uint64_t delayed;    /* calls a delay rule held */
	uint64_t active;     /* calls inside the shim now */
	uint64_t rule_id;    /* the fail rule rule_fired counts for */
	uint64_t rule_fired; /* how often it fired */
	uint64_t reserved[2];
};
struct stats {
	char magic[8];
	/* Odd while an update is half done: a reader that sees it odd, or sees
	 * it change while it reads, reads again. */
	uint64_t seq;
	uint64_t nfuncs;
	uint64_t initialized;     /* 1 between C_Initialize and C_Finalize */
	uint64_t initializations; /* successful C_Initialize answers */
	uint64_t open;            /* sessions open through the shim now */
	uint64_t peak;            /* the most that were open at once */
	uint64_t refused;         /* CKR_SESSION_COUNT answers of the limit */
	uint64_t control_errors;  /* lines of the control file not understood */
	struct fn_stats fn[NFUNCS];
};

struct rule {
	CK_RV fail; /* CKR_OK: no fail rule */
	uint64_t times, id;
	unsigned long delay_ms;
};

struct session {
	CK_SESSION_HANDLE handle;
	CK_SLOT_ID slot;
};

/* One mutex for all bookkeeping. It is never held across a call into the
 * real module except in C_Initialize/C_Finalize, where the caller must not
 * be calling anything else anyway, so the real module's own concurrency is
 * what the callers see. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void *real_handle;
static char real_path[4096];
static CK_FUNCTION_LIST_PTR real;
static CK_FUNCTION_LIST list;

static int initialised;
/* Whether our C_Initialize initialised the real module. If it was already
 * initialised (the test also loaded SoftHSM2 by the same path: dlopen gives
 * the same instance) it belongs to that other user, and our C_Finalize must
 * leave it running. */
static int owns_real;

static char control_path[4096];
static struct stat control_seen;
static int control_loaded;
static struct rule rules[NFUNCS];
static unsigned long session_limit;

/* Without a control file the counters live here and nobody reads them. */
static struct stats private_stats;
static struct stats *st = &private_stats;

static struct session *sessions;
static size_t nsessions, sessions_cap;
/* Opens let through the limit whose real C_OpenSession has not answered
 * yet: counting them keeps concurrent opens from overshooting the limit. */
static size_t pending;

static void stats_begin(void)
{
	st->seq++;
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

static void stats_end(void)
{
	__atomic_thread_fence(__ATOMIC_RELEASE);
	st->seq++;
}

static int lookup(const char *name)
{
	for (int f = 0; f < NFUNCS; f++)
		if (strcmp(names[f], name) == 0)
			return f;
	return -1;
}

static int same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino &&
	       a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
	       a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* load_control re-reads the control file if it changed. A stat per call
 * costs well under a microsecond; reading the file each time would cost
 * several. Called with mu held. */
static void load_control(void)
{
	struct rule next[NFUNCS];
	unsigned long limit = 0, errors = 0;
	struct stat sb;
	char line[256];
	FILE *file;

	if (!control_path[0])
		return;
	if (stat(control_path, &sb) != 0)
		memset(&sb, 0, sizeof sb); /* a missing file is an empty one */
	if (control_loaded && same_file(&sb, &control_seen))
		return;
	control_seen = sb;
	control_loaded = 1;

	memset(next, 0, sizeof next);
	file = fopen(control_path, "re");
	while (file && fgets(line, sizeof line, file)) {
		char name[64];
		unsigned long a;
		unsigned long long times, id;
		int f;

		if (line[0] == '#' || line[strspn(line, " \t\r\n")] == 0)
			continue;
		if (sscanf(line, "limit %lu", &a) == 1)
			limit = a;
		else if (sscanf(line, "fail %63s %lx %llu %llu", name, &a, &times, &id) == 4 &&
			 (f = lookup(name)) >= 0 && a != CKR_OK) {
			next[f].fail = a;
			next[f].times = times;
			next[f].id = id;
		} else if (sscanf(line, "delay %63s %lu", name, &a) == 2 &&
			   (f = lookup(name)) >= 0)
			next[f].delay_ms = a;
		else
			errors++;
	}
	if (file)
		fclose(file);
	memcpy(rules, next, sizeof rules);
	session_limit = limit;
	stats_begin();
	st->control_errors = errors;
	stats_end();
}

/* map_stats points st at the stats file of the control file, keeping what
 * an earlier load of the shim counted there. Called with mu held. */
static void map_stats(const char *control)
{
	char path[sizeof control_path + 8];
	struct stat sb;
	void *p;
	int fd;

	if (st != &private_stats) {
		if (strcmp(control, control_path) == 0)
			return;
		munmap(st, sizeof *st);
		st = &private_stats;
	}
	if (!control[0])
		return;
	snprintf(path, sizeof path, "%s.stats", control);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || fstat(fd, &sb) != 0 ||
	    (sb.st_size != (off_t)sizeof *st && ftruncate(fd, sizeof *st) != 0)) {
		perror("p11fault: stats file");
		if (fd >= 0)
			close(fd);
		return;
	}
	p = mmap(NULL, sizeof *st, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		perror("p11fault: mapping the stats file");
		return;
	}
	st = p;
	if (memcmp(st->magic, STATS_MAGIC, sizeof st->magic) != 0 || st->nfuncs != NFUNCS) {
		memset(st, 0, sizeof *st);
		st->nfuncs = NFUNCS;
		for (int f = 0; f < NFUNCS; f++)
			snprintf(st->fn[f].name, sizeof st->fn[f].name, "%s", names[f]);
		/* Last, so a reader never takes a half-made file for a valid one. */
		__atomic_thread_fence(__ATOMIC_RELEASE);
		memcpy(st->magic, STATS_MAGIC, sizeof st->magic);
	}
}

static void publish_sessions(void)
{
	stats_begin();
	st->open = nsessions;
	if (nsessions > st->peak)
		st->peak = nsessions;
	stats_end();
}

static void remember(CK_SESSION_HANDLE handle, CK_SLOT_ID slot)
{
	if (nsessions == sessions_cap) {
		size_t cap = sessions_cap ? 2 * sessions_cap : 64;
		struct session *s = realloc(sessions, cap * sizeof *s);
		if (!s)
			return; /* uncounted: the limit errs on the generous side */
		sessions = s;
		sessions_cap = cap;
	}
	sessions[nsessions++] = (struct session){ handle, slot };
	publish_sessions();
}

static void forget(CK_SESSION_HANDLE handle)
{
	for (size_t i = 0; i < nsessions; i++)
		if (sessions[i].handle == handle) {
			sessions[i] = sessions[--nsessions];
			break;
		}
	publish_sessions();
}

static void forget_slot(CK_SLOT_ID slot)
{
	for (size_t i = 0; i < nsessions;)
		if (sessions[i].slot == slot)
			sessions[i] = sessions[--nsessions];
		else
			i++;
	publish_sessions();
}

/* take_fault says whether f's fail rule fires for this call. Whether it
 * has fired enough is kept in the stats file, so a rule for "the next call"
 * means exactly one call even if the shim is unloaded in between.
 * Called with mu held. */
static CK_RV take_fault(int f)
{
	struct rule *r = &rules[f];
	struct fn_stats *s = &st->fn[f];
	int fire;

	if (r->fail == CKR_OK)
		return CKR_OK;
	stats_begin();
	if (s->rule_id != r->id) {
		s->rule_id = r->id;
		s->rule_fired = 0;
	}
	fire = r->times == 0 || s->rule_fired < r->times;
	if (fire) {
		s->rule_fired++;
		s->faults++;
	}
	stats_end();
	return fire ? r->fail : CKR_OK;
}

static int64_t since_ns(const struct timespec *start)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)(now.tv_sec - start->tv_sec) * 1000000000 + (now.tv_nsec - start->tv_nsec);
}

/* hold sleeps while f's delay rule says so. It sleeps in short slices and
 * looks at the control file between them, so a test that clears or shortens
 * the delay releases held calls at once: a test can hold a call for "an
 * hour", see it held, and let it go, without timing anything. */
static void hold(int f)
{
	const int64_t slice = 2 * 1000000;
	struct timespec start;

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		int64_t want, left;
		pthread_mutex_lock(&mu);
		load_control();
		want = (int64_t)rules[f].delay_ms * 1000000;
		pthread_mutex_unlock(&mu);
		left = want - since_ns(&start);
		if (left <= 0)
			return;
		if (left > slice)
			left = slice;
		nanosleep(&(struct timespec){ 0, left }, NULL);
	}
}

/* enter counts a call, holds it if a delay rule says so, and returns the
 * code a fail rule makes it answer, or CKR_OK to go on. The fail rule is
 * looked at after the delay, so "hold, then fail" models a timeout. */
static CK_RV enter(int f)
{
	CK_RV fault;

	pthread_mutex_lock(&mu);
	load_control();
	stats_begin();
	st->fn[f].calls++;
	st->fn[f].active++;
	if (rules[f].delay_ms)
		st->fn[f].delayed++;
	stats_end();
	if (rules[f].delay_ms) {
		pthread_mutex_unlock(&mu);
		hold(f);
		pthread_mutex_lock(&mu);
		load_control();
	}
	fault = take_fault(f);
	pthread_mutex_unlock(&mu);
	return fault;
}

static CK_RV leave(int f, CK_RV rv)
{
	pthread_mutex_lock(&mu);
	stats_begin();
	st->fn[f].active--;
	stats_end();
	pthread_mutex_unlock(&mu);
	return rv;
}

/* A faulted call does not reach the real module: the HSM refused before
 * doing anything, which is what these codes mean. */
#define BEFORE(name, params, args)                                  \
	static CK_RV w_##name params                                \
	{                                                           \
		CK_RV rv = enter(F_##name);                         \
		if (rv == CKR_OK)                                   \
			rv = real->name args;                       \
		return leave(F_##name, rv);                         \
	}

/* A faulted call still reaches the real module, and only its answer is
 * replaced: these functions release something (a login, a search), and an
 * HSM that fails them has dropped it anyway. Not running them would leave
 * SoftHSM2 holding what the caller believes is gone. */
#define AFTER(name, params, args)                                   \
	static CK_RV w_##name params                                \
	{                                                           \
		CK_RV fault = enter(F_##name);                      \
		CK_RV rv = real->name args;                         \
		return leave(F_##name, fault != CKR_OK ? fault : rv); \
	}

BEFORE(C_GetInfo, (CK_INFO_PTR info), (info))
BEFORE(C_GetSlotList, (CK_BBOOL present, CK_SLOT_ID_PTR slots, CK_ULONG_PTR n), (present, slots, n))
BEFORE(C_GetSlotInfo, (CK_SLOT_ID slot, CK_SLOT_INFO_PTR info), (slot, info))
BEFORE(C_GetTokenInfo, (CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info), (slot, info))
BEFORE(C_GetMechanismList, (CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR mechs, CK_ULONG_PTR n), (slot, mechs, n))
BEFORE(C_GetMechanismInfo, (CK_SLOT_ID slot, CK_MECHANISM_TYPE mech, CK_MECHANISM_INFO_PTR info), (slot, mech, info))
BEFORE(C_GetSessionInfo, (CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR info), (h, info))
BEFORE(C_Login, (CK_SESSION_HANDLE h, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG len), (h, user, pin, len))
AFTER(C_Logout, (CK_SESSION_HANDLE h), (h))
BEFORE(C_CreateObject, (CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n, CK_OBJECT_HANDLE_PTR obj), (h, tmpl, n, obj))
BEFORE(C_DestroyObject, (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj), (h, obj))
BEFORE(C_GetAttributeValue, (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n), (h, obj, tmpl, n))
BEFORE(C_SetAttributeValue, (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n), (h, obj, tmpl, n))
BEFORE(C_FindObjectsInit, (CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n), (h, tmpl, n))
BEFORE(C_FindObjects, (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR objs, CK_ULONG max, CK_ULONG_PTR n), (h, objs, max, n))
AFTER(C_FindObjectsFinal, (CK_SESSION_HANDLE h), (h))
BEFORE(C_SignInit, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key), (h, mech, key))
BEFORE(C_GenerateKeyPair,
       (CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR pub, CK_ULONG npub,
	CK_ATTRIBUTE_PTR priv, CK_ULONG npriv, CK_OBJECT_HANDLE_PTR hpub, CK_OBJECT_HANDLE_PTR hpriv),
       (h, mech, pub, npub, priv, npriv, hpub, hpriv))
BEFORE(C_GenerateRandom, (CK_SESSION_HANDLE h, CK_BYTE_PTR buf, CK_ULONG n), (h, buf, n))

/* PKCS#11 says a failed C_Sign, C_SignUpdate or C_SignFinal ends the
 * signing operation (other than CKR_BUFFER_TOO_SMALL and a length query).
 * A faulted one must end the real module's operation too, or the session's
 * next C_SignInit would get CKR_OPERATION_ACTIVE, which no HSM would say.
 * So a faulted call finishes the operation into a scratch buffer and throws
 * the signature away. */
static void finish_sign(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, int single)
{
	CK_ULONG n = 0;
	CK_BYTE_PTR buf;
	CK_RV rv = single ? real->C_Sign(h, data, len, NULL, &n) : real->C_SignFinal(h, NULL, &n);
	if (rv != CKR_OK)
		return; /* the real module failed, which ended the operation */
	buf = malloc(n ? n : 1);
	if (!buf)
		return;
	if (single)
		real->C_Sign(h, data, len, buf, &n);
	else
		real->C_SignFinal(h, buf, &n);
	free(buf);
}

static CK_RV w_C_Sign(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig, CK_ULONG_PTR siglen)
{
	CK_RV rv = enter(F_C_Sign);
	if (rv == CKR_OK)
		rv = real->C_Sign(h, data, len, sig, siglen);
	else
		finish_sign(h, data, len, 1);
	return leave(F_C_Sign, rv);
}

static CK_RV w_C_SignUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG len)
{
	CK_RV rv = enter(F_C_SignUpdate);
	if (rv == CKR_OK)
		rv = real->C_SignUpdate(h, part, len);
	else
		finish_sign(h, NULL, 0, 0);
	return leave(F_C_SignUpdate, rv);
}

static CK_RV w_C_SignFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG_PTR siglen)
{
	CK_RV rv = enter(F_C_SignFinal);
	if (rv == CKR_OK)
		rv = real->C_SignFinal(h, sig, siglen);
	else
		finish_sign(h, NULL, 0, 0);
	return leave(F_C_SignFinal, rv);
}

/* The session limit is checked after the fail rule: either can refuse. */
static CK_RV w_C_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify,
			     CK_SESSION_HANDLE_PTR session)
{
	CK_RV rv = enter(F_C_OpenSession);
	if (rv != CKR_OK)
		return leave(F_C_OpenSession, rv);

	pthread_mutex_lock(&mu);
	if (session_limit && nsessions + pending >= session_limit) {
		stats_begin();
		st->refused++;
		st->fn[F_C_OpenSession].faults++;
		stats_end();
		rv = CKR_SESSION_COUNT;
	} else
		pending++;
	pthread_mutex_unlock(&mu);
	if (rv != CKR_OK)
		return leave(F_C_OpenSession, rv);

	rv = real->C_OpenSession(slot, flags, app, notify, session);
	pthread_mutex_lock(&mu);
	pending--;
	if (rv == CKR_OK)
		remember(*session, slot);
	pthread_mutex_unlock(&mu);
	return leave(F_C_OpenSession, rv);
}

/* Closing always reaches the real module (see AFTER). */
static CK_RV w_C_CloseSession(CK_SESSION_HANDLE h)
{
	CK_RV fault = enter(F_C_CloseSession);
	CK_RV rv = real->C_CloseSession(h);
	if (rv == CKR_OK) {
		pthread_mutex_lock(&mu);
		forget(h);
		pthread_mutex_unlock(&mu);
	}
	return leave(F_C_CloseSession, fault != CKR_OK ? fault : rv);
}

static CK_RV w_C_CloseAllSessions(CK_SLOT_ID slot)
{
	CK_RV fault = enter(F_C_CloseAllSessions);
	CK_RV rv = real->C_CloseAllSessions(slot);
	if (rv == CKR_OK) {
		pthread_mutex_lock(&mu);
		forget_slot(slot);
		pthread_mutex_unlock(&mu);
	}
	return leave(F_C_CloseAllSessions, fault != CKR_OK ? fault : rv);
}

/* configure takes this initialisation's settings from the environment, so
 * each test's control file applies from its first C_Initialize on. Called
 * with mu held. */
static CK_RV configure(void)
{
	const char *module = getenv("P11FAULT_MODULE");
	const char *control = getenv("P11FAULT_CONTROL");

	if (!real)
		return CKR_GENERAL_ERROR; /* C_GetFunctionList said why */
	if (!module || strcmp(module, real_path) != 0) {
		fprintf(stderr, "p11fault: P11FAULT_MODULE is now %s, but this load of the shim wraps %s\n",
			module ? module : "unset", real_path);
		return CKR_GENERAL_ERROR;
	}
	if (!control)
		control = "";
	if (strlen(control) >= sizeof control_path) {
		fprintf(stderr, "p11fault: P11FAULT_CONTROL is too long\n");
		return CKR_GENERAL_ERROR;
	}
	map_stats(control);
	strcpy(control_path, control);
	control_loaded = 0;
	memset(rules, 0, sizeof rules);
	session_limit = 0;
	nsessions = pending = 0;
	return CKR_OK;
}

static CK_RV w_C_Initialize(CK_VOID_PTR args)
{
	CK_RV rv;

	pthread_mutex_lock(&mu);
	rv = initialised ? CKR_CRYPTOKI_ALREADY_INITIALIZED : configure();
	pthread_mutex_unlock(&mu);
	if (rv != CKR_OK)
		return rv; /* not counted: the stats file may not be this test's */

	rv = enter(F_C_Initialize);
	if (rv != CKR_OK)
		return leave(F_C_Initialize, rv);
	/* The caller's arguments pass through: if it wants OS locking the real
	 * module gets it too. The shim's own mutex is a pthread one either way. */
	rv = real->C_Initialize(args);
	pthread_mutex_lock(&mu);
	owns_real = rv == CKR_OK;
	/* Someone else in this process initialised the same real module: to
	 * our caller we are a module of our own, and it never initialised us. */
	if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED)
		rv = CKR_OK;
	if (rv == CKR_OK) {
		initialised = 1;
		stats_begin();
		st->initialized = 1;
		st->initializations++;
		st->open = 0;
		stats_end();
	}
	pthread_mutex_unlock(&mu);
	return leave(F_C_Initialize, rv);
}

/* A fail rule on C_Finalize fires after the real finalisation (see AFTER). */
static CK_RV w_C_Finalize(CK_VOID_PTR reserved)
{
	CK_RV fault = enter(F_C_Finalize);
	CK_RV rv;

	pthread_mutex_lock(&mu);
	if (!initialised)
		rv = CKR_CRYPTOKI_NOT_INITIALIZED;
	else if (owns_real)
		rv = real->C_Finalize(reserved);
	else {
		/* Leave the real module to its owner, but end what we began in
		 * it, as finalising a module of our own would. */
		for (size_t i = 0; i < nsessions; i++)
			real->C_CloseSession(sessions[i].handle);
		rv = CKR_OK;
	}
	/* Someone else finalised the real module under us: it is gone all the
	 * same. */
	if (initialised && rv == CKR_CRYPTOKI_NOT_INITIALIZED)
		rv = CKR_OK;
	if (initialised && rv == CKR_OK) {
		initialised = 0;
		nsessions = pending = 0;
		publish_sessions();
		stats_begin();
		st->initialized = 0;
		stats_end();
	}
	pthread_mutex_unlock(&mu);
	return leave(F_C_Finalize, rv == CKR_OK && fault != CKR_OK ? fault : rv);
}

/* load_real opens the real module. Called with mu held. */
static CK_RV load_real(void)
{
	const char *path = getenv("P11FAULT_MODULE");
	CK_C_GetFunctionList get;

	if (!path || !*path || strlen(path) >= sizeof real_path) {
		fprintf(stderr, "p11fault: P11FAULT_MODULE must name the PKCS#11 module to wrap\n");
		return CKR_GENERAL_ERROR;
	}
	real_handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!real_handle) {
		fprintf(stderr, "p11fault: %s\n", dlerror());
		return CKR_GENERAL_ERROR;
	}
	get = (CK_C_GetFunctionList)dlsym(real_handle, "C_GetFunctionList");
	if (!get || get(&real) != CKR_OK || !real) {
		fprintf(stderr, "p11fault: %s has no usable C_GetFunctionList\n", path);
		dlclose(real_handle);
		real_handle = NULL;
		real = NULL;
		return CKR_GENERAL_ERROR;
	}
	strcpy(real_path, path);
	list = *real;
	return CKR_OK;
}

__attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out)
{
	CK_RV rv = CKR_OK;

	if (!out)
		return CKR_ARGUMENTS_BAD;
	pthread_mutex_lock(&mu);
	if (!real) {
		rv = load_real();
		if (!real)
			list.version = (CK_VERSION){ 2, 40 };
#define INSTALL(name) list.name = w_##name;
		WRAPPED(INSTALL)
	}
	pthread_mutex_unlock(&mu);
	/* Hand out the list even on failure: miekg/pkcs11 ignores this answer
	 * and would crash on a NULL list, while our C_Initialize reports the
	 * failure. The unwrapped entries are NULL then. */
	*out = &list;
	return rv;
}

/* The shim is unloaded when its last user dlcloses it (crypto11 does when
 * its last context closes): let go of the real module and the stats file. */
__attribute__((destructor)) static void unload(void)
{
	if (st != &private_stats)
		munmap(st, sizeof *st);
	if (real_handle)
		dlclose(real_handle);
	free(sessions);
}
