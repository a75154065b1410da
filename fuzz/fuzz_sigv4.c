/* fuzz_sigv4.c - libFuzzer target: SigV4 canonicalisation and signing (s3/sigv4.c).
 *
 * Input: one flags byte, then '\n'-separated fields: method, path, query, payload hash, and
 * any number of "name:value" header lines (a Host header is added when the flags say so).
 * Both the header and the presigned form are signed. When signing succeeds the canonical
 * request must start with the method and have the fixed number of lines, and the signature
 * must be 64 lowercase hex digits. sigv4_uri_encode of the path must keep only unreserved
 * characters (and '/') and decode back to the input.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "sigv4.h"

#define MAX_HEADERS 16

static void check_result(const struct sigv4_request *req, const struct sigv4_result *r, bool query)
{
	size_t nl = 0, mlen = strlen(req->method);

	FUZZ_ASSERT(r->canonical_request && r->string_to_sign && r->signature);
	FUZZ_ASSERT(strncmp(r->canonical_request, req->method, mlen) == 0 &&
		    r->canonical_request[mlen] == '\n');
	FUZZ_ASSERT(strlen(r->signature) == 64);
	for (const char *p = r->signature; *p; p++)
		FUZZ_ASSERT(isxdigit((unsigned char)*p) && !isupper((unsigned char)*p));
	/* method, uri, query, headers (one line each, then an empty one), names, payload hash:
	 * header values are trimmed of newlines only if the signer folds them, so count at least */
	for (const char *p = r->canonical_request; *p; p++)
		nl += *p == '\n';
	FUZZ_ASSERT(nl >= 5);
	if (query)
		FUZZ_ASSERT(r->signed_query && strstr(r->signed_query, "X-Amz-Signature="));
	else
		FUZZ_ASSERT(r->authorization && strstr(r->authorization, r->signature));
}

static void check_encode(const char *s)
{
	char *e = sigv4_uri_encode(s, strlen(s), true), *d;
	size_t o = 0;

	FUZZ_ASSERT(e);
	d = malloc(strlen(e) + 1);
	FUZZ_ASSERT(d);
	for (const char *p = e; *p; p++) {
		if (*p == '%') {
			FUZZ_ASSERT(isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2]) &&
				    !islower((unsigned char)p[1]) && !islower((unsigned char)p[2]));
			d[o++] = (char)strtol((char[]){ p[1], p[2], '\0' }, NULL, 16);
			p += 2;
		} else {
			FUZZ_ASSERT(isalnum((unsigned char)*p) || strchr("-._~/", *p));
			d[o++] = *p;
		}
	}
	d[o] = '\0';
	FUZZ_ASSERT(strcmp(d, s) == 0);
	free(d);
	free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sigv4_header hdrs[MAX_HEADERS + 1];
	const char *field[4] = { "GET", "/", "", NULL };
	struct sigv4_creds creds = { "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", NULL };
	struct sigv4_params params = { .region = "us-east-1", .service = "s3", .when = 1440938160,
				       .expires = 86400 };
	struct sigv4_request req;
	struct sigv4_result res;
	size_t nh = 0, nf = 0;
	char *text, *p, *line;
	uint8_t flags;

	if (size < 1)
		return 0;
	flags = data[0];
	text = fuzz_strndup(data + 1, size - 1);
	params.normalize_path = flags & 1;
	params.double_encode = flags & 2;
	params.omit_session_token = flags & 4;
	params.content_sha256_header = flags & 8;
	if (flags & 16)
		creds.session_token = "token/with+odd=chars";
	for (p = text; (line = strsep(&p, "\n")) != NULL;) {
		char *colon;

		if (nf < 4) {
			field[nf++] = line;
			continue;
		}
		colon = strchr(line, ':');
		if (!colon || nh == MAX_HEADERS)
			continue;
		*colon = '\0';
		hdrs[nh].name = line;
		hdrs[nh++].value = colon + 1;
	}
	if (flags & 32)
		hdrs[nh++] = (struct sigv4_header){ "Host", "examplebucket.s3.amazonaws.com" };
	req = (struct sigv4_request){ .method = field[0], .path = field[1], .query = field[2],
				      .headers = hdrs, .n_headers = nh, .payload_hash = field[3] };
	if (sigv4_sign_header(&req, &creds, &params, &res) == 0)
		check_result(&req, &res, false);
	sigv4_result_release(&res);
	if (sigv4_sign_query(&req, &creds, &params, &res) == 0)
		check_result(&req, &res, true);
	sigv4_result_release(&res);
	check_encode(field[1]);
	free(text);
	return 0;
}
