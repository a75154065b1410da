/* test_s3_xml.c - the S3 XML parsers and builders of s3/xml.c against S3-shaped documents.
 *
 * Every fixture is written as S3 sends it (declaration, the 2006-03-01 namespace, the
 * elements s3jobfs does not read left in), some pretty-printed to show that white space between
 * elements does not matter. Besides the table of documents, every fixture is also fed cut short
 * at every length, which must give an error and never a crash (the sanitizer build runs this).
 * Expected times are UTC epoch seconds computed outside the code under test.
 */
#include <errno.h>
#include <stdbool.h>

#include "harness.h"
#include "../../s3/s3_i.h"

#define XMLDECL	"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
#define NS	" xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\""
#define LEN(s)	(sizeof(s) - 1)

#define T_2026_11_25_010203	1795568523	/* 2026-11-25T01:02:03Z */
#define T_2026_11_24_235959	1795564799
#define T_2025_01_31_120000	1738324800
#define T_2026_10_01_083000	1790843400
#define T_2026_11_20_100000	1795168800
#define T_2026_11_21_111111	1795259471
#define T_2024_02_29_000000	1709164800

static const char list_empty[] = XMLDECL
	"<ListBucketResult" NS "><Name>jobs</Name><Prefix>empty/</Prefix><KeyCount>0</KeyCount>"
	"<MaxKeys>1000</MaxKeys><Delimiter>/</Delimiter><IsTruncated>false</IsTruncated>"
	"</ListBucketResult>";

static const char list_truncated[] = XMLDECL
	"<ListBucketResult" NS ">\n"
	"  <Name>jobs</Name>\n"
	"  <Prefix>out/</Prefix>\n"
	"  <ContinuationToken>1w41l63U0xa8q7smH50vCxyTQqdxo69O3EmK28Bi5PcROI4wI/EyIJg==</ContinuationToken>\n"
	"  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>\n"
	"  <KeyCount>3</KeyCount>\n"
	"  <MaxKeys>3</MaxKeys>\n"
	"  <IsTruncated>true</IsTruncated>\n"
	"  <Contents>\n"
	"    <Key>out/a.json</Key>\n"
	"    <LastModified>2026-11-25T01:02:03.000Z</LastModified>\n"
	"    <ETag>&quot;d41d8cd98f00b204e9800998ecf8427e&quot;</ETag>\n"
	"    <ChecksumAlgorithm>CRC32</ChecksumAlgorithm>\n"
	"    <Size>0</Size>\n"
	"    <StorageClass>STANDARD</StorageClass>\n"
	"  </Contents>\n"
	"  <Contents>\n"
	"    <Key>out/big.parquet</Key>\n"
	"    <LastModified>2026-11-24T23:59:59Z</LastModified>\n"
	"    <ETag>\"3858f62230ac3c915f300c664312c11f-9\"</ETag>\n"
	"    <Size>5368709120</Size>\n"
	"    <StorageClass>STANDARD</StorageClass>\n"
	"  </Contents>\n"
	"  <Contents>\n"
	"    <Key>out/c d &amp; e.txt</Key>\n"
	"    <LastModified>2025-01-31T12:00:00.123Z</LastModified>\n"
	"    <ETag>&quot;0cc175b9c0f1b6a831c399e269772661&quot;</ETag>\n"
	"    <Size>1</Size>\n"
	"    <Owner><ID>75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a</ID></Owner>\n"
	"    <StorageClass>STANDARD_IA</StorageClass>\n"
	"  </Contents>\n"
	"</ListBucketResult>\n";

static const char list_url[] = XMLDECL
	"<ListBucketResult" NS "><Name>jobs</Name><Prefix>in%20box/</Prefix>"
	"<NextContinuationToken>tok%2Bstays</NextContinuationToken><KeyCount>6</KeyCount>"
	"<MaxKeys>6</MaxKeys><Delimiter>%2F</Delimiter><EncodingType>url</EncodingType>"
	"<IsTruncated>true</IsTruncated>"
	"<Contents><Key>in%20box/a%20b.txt</Key><LastModified>2026-11-25T01:02:03.000Z</LastModified>"
	"<ETag>&quot;aa&quot;</ETag><Size>1</Size><StorageClass>STANDARD</StorageClass></Contents>"
	"<Contents><Key>in%20box/c%2Bd</Key><LastModified>2026-11-25T01:02:03.000Z</LastModified>"
	"<ETag>&quot;bb&quot;</ETag><Size>2</Size><StorageClass>STANDARD</StorageClass></Contents>"
	"<Contents><Key>in%20box/100%25.csv</Key><LastModified>2026-11-25T01:02:03.000Z</LastModified>"
	"<ETag>&quot;cc&quot;</ETag><Size>3</Size><StorageClass>STANDARD</StorageClass></Contents>"
	"<Contents><Key>in%20box/caf%C3%A9.json</Key><LastModified>2026-11-25T01:02:03.000Z</LastModified>"
	"<ETag>&quot;dd&quot;</ETag><Size>4</Size><StorageClass>STANDARD</StorageClass></Contents>"
	"<Contents><Key>in%20box/x+y</Key><LastModified>2026-11-25T01:02:03.000Z</LastModified>"
	"<ETag>&quot;ee&quot;</ETag><Size>5</Size><StorageClass>STANDARD</StorageClass></Contents>"
	"<Contents><Key>in%20box/tab%09cr%0D</Key><LastModified>2026-11-25T01:02:03.000Z</LastModified>"
	"<ETag>&quot;ff&quot;</ETag><Size>6</Size><StorageClass>STANDARD</StorageClass></Contents>"
	"<CommonPrefixes><Prefix>in%20box/r%C3%A9sum%C3%A9s%2B%25/</Prefix></CommonPrefixes>"
	"</ListBucketResult>";

static const char list_prefixes[] = XMLDECL
	"<ListBucketResult" NS "><Name>jobs</Name><Prefix>photos/</Prefix><KeyCount>4</KeyCount>"
	"<MaxKeys>1000</MaxKeys><Delimiter>/</Delimiter><IsTruncated>false</IsTruncated>"
	"<Contents><Key>photos/index.html</Key><LastModified>2026-10-01T08:30:00.000Z</LastModified>"
	"<ETag>&quot;5d41402abc4b2a76b9719d911017c592&quot;</ETag><Size>5</Size>"
	"<StorageClass>STANDARD</StorageClass></Contents>"
	"<Contents><Key>photos/ </Key><LastModified>2026-10-01T08:30:00.000Z</LastModified>"
	"<ETag>&quot;d41d8cd98f00b204e9800998ecf8427e&quot;</ETag><Size>0</Size>"
	"<StorageClass>STANDARD</StorageClass></Contents>"
	"<CommonPrefixes><Prefix>photos/2025/</Prefix></CommonPrefixes>"
	"<CommonPrefixes><Prefix>photos/2026/</Prefix></CommonPrefixes>"
	"</ListBucketResult>";

/* ListObjects V1 (what some servers answer), with a delimiter so NextMarker is present */
static const char list_v1[] = XMLDECL
	"<ListBucketResult" NS "><Name>jobs</Name><Prefix>photos/</Prefix><Marker></Marker>"
	"<NextMarker>photos/b%20c/</NextMarker><MaxKeys>2</MaxKeys><Delimiter>/</Delimiter>"
	"<EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>"
	"<Contents><Key>photos/a.png</Key><LastModified>2026-10-01T08:30:00.000Z</LastModified>"
	"<ETag>&quot;9e107d9d372bb6826bd81d3542a419d6&quot;</ETag><Size>43</Size>"
	"<Owner><ID>abc</ID><DisplayName>me</DisplayName></Owner>"
	"<StorageClass>STANDARD</StorageClass></Contents>"
	"<CommonPrefixes><Prefix>photos/b%20c/</Prefix></CommonPrefixes>"
	"</ListBucketResult>";

static const char err_no_such_bucket[] = XMLDECL
	"<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message>"
	"<BucketName>nope</BucketName><RequestId>4442587FB7D0A2F9</RequestId>"
	"<HostId>dGVzdA==</HostId></Error>";

static const char err_auth_region[] = XMLDECL
	"<Error><Code>AuthorizationHeaderMalformed</Code><Message>The authorization header is "
	"malformed; the region 'us-east-1' is wrong; expecting 'eu-west-1'</Message>"
	"<Region>eu-west-1</Region><RequestId>7NE6CC6D7NSR6RAZ</RequestId>"
	"<HostId>aG9zdA==</HostId></Error>";

static const char err_redirect[] = XMLDECL
	"<Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access must "
	"be addressed using the specified endpoint. Please send all future requests to this "
	"endpoint.</Message><Endpoint>jobs.s3.eu-central-1.amazonaws.com</Endpoint>"
	"<Bucket>jobs</Bucket><RequestId>F2W1SQ4PAQ3E8G5N</RequestId><HostId>aWQ=</HostId></Error>";

static const char initiate_ok[] = XMLDECL
	"<InitiateMultipartUploadResult" NS "><Bucket>jobs</Bucket><Key>out/big.parquet</Key>"
	"<UploadId>VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId>"
	"</InitiateMultipartUploadResult>";

static const char complete_ok[] = XMLDECL
	"<CompleteMultipartUploadResult" NS ">"
	"<Location>https://jobs.s3.eu-west-1.amazonaws.com/out/big.parquet</Location>"
	"<Bucket>jobs</Bucket><Key>out/big.parquet</Key>"
	"<ETag>&quot;3858f62230ac3c915f300c664312c11f-9&quot;</ETag>"
	"</CompleteMultipartUploadResult>";

/* HTTP 200, then white space while S3 works, then an Error */
static const char complete_error[] = "\n \n" XMLDECL "\n          \n"
	"<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try "
	"again.</Message><RequestId>656c76696e6727732072657175657374</RequestId>"
	"<HostId>Uuag1LuByRx9e6j5Onimru9pO4ZVKnJ2Qz7/C1NPcfTWAtRPfTaOFg==</HostId></Error>";

static const char copy_ok[] = XMLDECL
	"<CopyObjectResult" NS "><LastModified>2026-11-25T01:02:03.000Z</LastModified>"
	"<ETag>\"9b2cf535f27731c974343645a3985328\"</ETag></CopyObjectResult>";

static const char parts_page1[] = XMLDECL
	"<ListPartsResult" NS "><Bucket>jobs</Bucket><Key>out/big.parquet</Key>"
	"<UploadId>XXBsb2FkIElEIGZvciBlbHZpbmcncyVcdS1tb3ZpZS5tMnRzEEEwbG9hZA</UploadId>"
	"<Initiator><ID>arn:aws:iam::111122223333:user/some-user</ID><DisplayName>u</DisplayName></Initiator>"
	"<Owner><ID>75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a</ID></Owner>"
	"<StorageClass>STANDARD</StorageClass><PartNumberMarker>0</PartNumberMarker>"
	"<NextPartNumberMarker>2</NextPartNumberMarker><MaxParts>2</MaxParts>"
	"<IsTruncated>true</IsTruncated>"
	"<Part><PartNumber>1</PartNumber><LastModified>2026-11-20T10:00:00.000Z</LastModified>"
	"<ETag>&quot;7778aef83f66abc1fa1e8477f296d394&quot;</ETag><Size>8388608</Size></Part>"
	"<Part><PartNumber>2</PartNumber><LastModified>2026-11-20T10:00:00.000Z</LastModified>"
	"<ETag>&quot;aaaa18db4cc2f85cedef654fccc4a4x8&quot;</ETag><Size>8388608</Size></Part>"
	"</ListPartsResult>";

static const char parts_page2[] = XMLDECL
	"<ListPartsResult" NS "><Bucket>jobs</Bucket><Key>out/big.parquet</Key>"
	"<UploadId>XXBsb2FkIElEIGZvciBlbHZpbmcncyVcdS1tb3ZpZS5tMnRzEEEwbG9hZA</UploadId>"
	"<PartNumberMarker>2</PartNumberMarker><NextPartNumberMarker>3</NextPartNumberMarker>"
	"<MaxParts>2</MaxParts><IsTruncated>false</IsTruncated>"
	"<Part><PartNumber>3</PartNumber><LastModified>2026-11-20T10:00:00.000Z</LastModified>"
	"<ETag>&quot;0123456789abcdef0123456789abcdef&quot;</ETag><Size>1234</Size></Part>"
	"</ListPartsResult>";

static const char uploads_two[] = XMLDECL
	"<ListMultipartUploadsResult" NS "><Bucket>jobs</Bucket><KeyMarker></KeyMarker>"
	"<UploadIdMarker></UploadIdMarker><NextKeyMarker>out/b.bin</NextKeyMarker>"
	"<NextUploadIdMarker>b-upload-2</NextUploadIdMarker><Prefix>out/</Prefix>"
	"<MaxUploads>2</MaxUploads><IsTruncated>true</IsTruncated>"
	"<Upload><Key>out/a.bin</Key><UploadId>a-upload-1</UploadId>"
	"<Initiator><ID>arn:aws:iam::111122223333:user/u</ID><DisplayName>u</DisplayName></Initiator>"
	"<Owner><ID>75aa</ID><DisplayName>u</DisplayName></Owner><StorageClass>STANDARD</StorageClass>"
	"<Initiated>2026-11-20T10:00:00.000Z</Initiated></Upload>"
	"<Upload><Key>out/b.bin</Key><UploadId>b-upload-2</UploadId>"
	"<Initiator><ID>arn:aws:iam::111122223333:user/u</ID><DisplayName>u</DisplayName></Initiator>"
	"<Owner><ID>75aa</ID><DisplayName>u</DisplayName></Owner><StorageClass>STANDARD</StorageClass>"
	"<Initiated>2026-11-21T11:11:11.000Z</Initiated></Upload>"
	"</ListMultipartUploadsResult>";

static const char delete_mixed[] = XMLDECL
	"<DeleteResult" NS "><Deleted><Key>out/a.json</Key></Deleted>"
	"<Error><Key>secret/b.txt</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
	"</DeleteResult>";

static void free_uploads(struct s3_upload *u, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(u[i].key);
		free(u[i].upload_id);
	}
	free(u);
}

static void test_list_empty(void)
{
	struct s3_list_page page;

	memset(&page, 0xA5, sizeof(page));	/* the parser zeroes it */
	T_EQ_INT(s3_xml_parse_list(list_empty, LEN(list_empty), &page), 0);
	T_EQ_INT(page.n_objects, 0);
	T_CHECK(page.objects == NULL);
	T_EQ_INT(page.n_prefixes, 0);
	T_CHECK(page.prefixes == NULL);
	T_CHECK(!page.truncated);
	T_CHECK(page.next_token == NULL);
	s3_list_page_release(&page);
	s3_list_page_release(&page);	/* released pages are empty: twice is harmless */
}

static void test_list_truncated(void)
{
	struct s3_list_page page;

	T_EQ_INT(s3_xml_parse_list(list_truncated, LEN(list_truncated), &page), 0);
	T_CHECK(page.truncated);
	T_EQ_STR(page.next_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
	T_EQ_INT(page.n_prefixes, 0);
	T_EQ_INT(page.n_objects, 3);
	if (page.n_objects == 3) {
		T_EQ_STR(page.objects[0].key, "out/a.json");
		T_EQ_INT(page.objects[0].size, 0);
		T_EQ_STR(page.objects[0].etag, "d41d8cd98f00b204e9800998ecf8427e");
		T_EQ_INT(page.objects[0].mtime, T_2026_11_25_010203);
		T_EQ_STR(page.objects[1].key, "out/big.parquet");
		T_CHECK(page.objects[1].size == 5368709120ULL);
		T_EQ_STR(page.objects[1].etag, "3858f62230ac3c915f300c664312c11f-9");
		T_EQ_INT(page.objects[1].mtime, T_2026_11_24_235959);
		T_EQ_STR(page.objects[2].key, "out/c d & e.txt");
		T_EQ_INT(page.objects[2].size, 1);
		T_EQ_STR(page.objects[2].etag, "0cc175b9c0f1b6a831c399e269772661");
		T_EQ_INT(page.objects[2].mtime, T_2025_01_31_120000);
	}
	s3_list_page_release(&page);
	T_CHECK(page.objects == NULL && page.n_objects == 0 && page.next_token == NULL);
}

static void test_list_url_encoded(void)
{
	static const char *const keys[] = {
		"in box/a b.txt", "in box/c+d", "in box/100%.csv", "in box/caf\xC3\xA9.json",
		"in box/x y", "in box/tab\tcr\r",	/* '+' is AWS's encoded space */
	};
	struct s3_list_page page;

	T_EQ_INT(s3_xml_parse_list(list_url, LEN(list_url), &page), 0);
	T_EQ_INT(page.n_objects, 6);
	for (size_t i = 0; i < page.n_objects && i < 6; i++) {
		T_EQ_STR(page.objects[i].key, keys[i]);
		T_EQ_INT(page.objects[i].size, i + 1);
	}
	T_EQ_INT(page.n_prefixes, 1);
	if (page.n_prefixes == 1)
		T_EQ_STR(page.prefixes[0], "in box/r\xC3\xA9sum\xC3\xA9s+%/");
	/* the continuation token is opaque: never decoded */
	T_EQ_STR(page.next_token, "tok%2Bstays");
	s3_list_page_release(&page);
}

static void test_list_common_prefixes(void)
{
	struct s3_list_page page;

	T_EQ_INT(s3_xml_parse_list(list_prefixes, LEN(list_prefixes), &page), 0);
	T_CHECK(!page.truncated);
	T_CHECK(page.next_token == NULL);
	T_EQ_INT(page.n_objects, 2);
	if (page.n_objects == 2) {
		T_EQ_STR(page.objects[0].key, "photos/index.html");
		T_EQ_INT(page.objects[0].mtime, T_2026_10_01_083000);
		T_EQ_STR(page.objects[1].key, "photos/ ");	/* a key of white space survives */
	}
	T_EQ_INT(page.n_prefixes, 2);
	if (page.n_prefixes == 2) {
		T_EQ_STR(page.prefixes[0], "photos/2025/");
		T_EQ_STR(page.prefixes[1], "photos/2026/");
	}
	s3_list_page_release(&page);
}

static void test_list_v1_next_marker(void)
{
	struct s3_list_page page;

	T_EQ_INT(s3_xml_parse_list(list_v1, LEN(list_v1), &page), 0);
	T_CHECK(page.truncated);
	T_EQ_STR(page.next_token, "photos/b c/");	/* a key: decoded */
	T_EQ_INT(page.n_objects, 1);
	if (page.n_objects == 1) {
		T_EQ_STR(page.objects[0].key, "photos/a.png");
		T_EQ_INT(page.objects[0].size, 43);
		T_EQ_STR(page.objects[0].etag, "9e107d9d372bb6826bd81d3542a419d6");
	}
	T_EQ_INT(page.n_prefixes, 1);
	if (page.n_prefixes == 1)
		T_EQ_STR(page.prefixes[0], "photos/b c/");
	s3_list_page_release(&page);
}

/* A listing whose one <Contents> holds `inner`, optionally url-encoded. */
#define LIST1(inner) XMLDECL "<ListBucketResult" NS "><Name>b</Name><IsTruncated>false" \
	"</IsTruncated><EncodingType>url</EncodingType><Contents>" inner "</Contents></ListBucketResult>"

static void test_list_bad(void)
{
	static const struct {
		const char *what, *xml;
	} bad[] = {
		{ "size with a letter", LIST1("<Key>a</Key><Size>12a</Size>") },
		{ "negative size", LIST1("<Key>a</Key><Size>-1</Size>") },
		{ "size +1", LIST1("<Key>a</Key><Size>+1</Size>") },
		{ "empty size", LIST1("<Key>a</Key><Size></Size>") },
		{ "size past 2^64", LIST1("<Key>a</Key><Size>18446744073709551616</Size>") },
		{ "bad time", LIST1("<Key>a</Key><LastModified>yesterday</LastModified>") },
		{ "no key", LIST1("<Size>1</Size>") },
		{ "short escape", LIST1("<Key>a%2</Key>") },
		{ "non-hex escape", LIST1("<Key>a%zz</Key>") },
		{ "NUL escape", LIST1("<Key>a%00b</Key>") },
		{ "prefix without Prefix", XMLDECL "<ListBucketResult" NS "><CommonPrefixes>"
		  "</CommonPrefixes></ListBucketResult>" },
		{ "bad IsTruncated", XMLDECL "<ListBucketResult><IsTruncated>maybe</IsTruncated>"
		  "</ListBucketResult>" },
		{ "not closed", XMLDECL "<ListBucketResult" NS "><Contents><Key>a</Key></Contents>" },
		{ "mismatched tags", XMLDECL "<ListBucketResult><Key></Size></ListBucketResult>" },
		{ "other root", XMLDECL "<ListAllMyBucketsResult" NS "></ListAllMyBucketsResult>" },
		{ "an Error", err_no_such_bucket },
		{ "not XML", "HTTP/1.1 500 Internal Server Error" },
		{ "empty", "" },
		{ "DOCTYPE with entities", XMLDECL "<!DOCTYPE l [<!ENTITY a \"aaaaaaaaaa\">"
		  "<!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">]>"
		  "<ListBucketResult><Contents><Key>&b;</Key></Contents></ListBucketResult>" },
		{ "external DTD", XMLDECL "<!DOCTYPE l SYSTEM \"file:///etc/passwd\">"
		  "<ListBucketResult></ListBucketResult>" },
	};
	struct s3_list_page page;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = s3_xml_parse_list(bad[i].xml, strlen(bad[i].xml), &page);

		if (rc != -EINVAL)
			T_FAILF("%s: rc %d, expected -EINVAL", bad[i].what, rc);
		T_CHECK(page.objects == NULL && page.n_objects == 0 && page.prefixes == NULL &&
			page.next_token == NULL);
		s3_list_page_release(&page);
	}
	/* a body that is not NUL-terminated: only len bytes are read */
	T_EQ_INT(s3_xml_parse_list(list_empty, LEN(list_empty) - 1, &page), -EINVAL);
	T_EQ_INT(s3_xml_parse_list(NULL, 0, &page), -EINVAL);
}

static void test_long_etag(void)
{
	char xml[512], etag[96];
	struct s3_list_page page;

	/* 100 characters, the cut one in the middle of a 2-byte UTF-8 character */
	memset(etag, 'e', sizeof(etag));
	memcpy(etag + 70, "\xC3\xA9", 2);
	etag[95] = '\0';
	snprintf(xml, sizeof(xml), LIST1("<Key>k</Key><ETag>&quot;%s%s&quot;</ETag>"), etag, "tail");
	T_EQ_INT(s3_xml_parse_list(xml, strlen(xml), &page), 0);
	if (page.n_objects == 1) {
		T_EQ_INT(strlen(page.objects[0].etag), 70);
		T_CHECK(!memcmp(page.objects[0].etag, etag, 70));
	}
	s3_list_page_release(&page);
}

static void test_error_docs(void)
{
	struct s3_error e = { 0 };

	T_EQ_INT(s3_xml_parse_error(err_no_such_bucket, LEN(err_no_such_bucket), &e), 0);
	T_EQ_STR(e.code, "NoSuchBucket");
	T_EQ_STR(e.message, "The specified bucket does not exist");
	T_EQ_STR(e.region, "");

	memset(&e, 0, sizeof(e));
	T_EQ_INT(s3_xml_parse_error(err_auth_region, LEN(err_auth_region), &e), 0);
	T_EQ_STR(e.code, "AuthorizationHeaderMalformed");
	T_EQ_STR(e.region, "eu-west-1");
	T_CHECK(strstr(e.message, "expecting 'eu-west-1'") != NULL);

	/* no Region element: what the caller had (from x-amz-bucket-region) stays */
	memset(&e, 0, sizeof(e));
	snprintf(e.region, sizeof(e.region), "eu-central-1");
	T_EQ_INT(s3_xml_parse_error(err_redirect, LEN(err_redirect), &e), 0);
	T_EQ_STR(e.code, "PermanentRedirect");
	T_EQ_STR(e.region, "eu-central-1");
	T_CHECK(!strncmp(e.message, "The bucket you are attempting to access", 39));
}

static void test_error_long_message(void)
{
	char xml[1024], msg[600];
	struct s3_error e = { 0 };

	for (size_t i = 0; i + 2 < sizeof(msg); i += 2)
		memcpy(msg + i, "\xC3\xA9", 2);	/* 'é' over and over */
	msg[598] = '\0';
	snprintf(xml, sizeof(xml), "<Error><Code>%s</Code><Message>%s</Message></Error>",
		 "ACodeLongerThanSixtyFourCharactersACodeLongerThanSixtyFourCharactersXX", msg);
	T_EQ_INT(s3_xml_parse_error(xml, strlen(xml), &e), 0);
	T_EQ_INT(strlen(e.code), 63);
	T_EQ_INT(strlen(e.message), 254);	/* 255 would cut an 'é' in two */
	T_CHECK(!memcmp(e.message, msg, 254));
}

static void test_error_bad(void)
{
	static const char not_error[] = XMLDECL "<ListBucketResult" NS "></ListBucketResult>";
	static const char broken[] = XMLDECL "<Error><Code>NoSuchKey</Code>";
	struct s3_error e = { .code = "keep" };

	T_EQ_INT(s3_xml_parse_error(not_error, LEN(not_error), &e), -EINVAL);
	T_EQ_INT(s3_xml_parse_error(broken, LEN(broken), &e), -EINVAL);
	T_EQ_INT(s3_xml_parse_error("<Error>", 7, &e), -EINVAL);
	T_EQ_INT(s3_xml_parse_error("", 0, &e), -EINVAL);
	T_EQ_STR(e.code, "keep");
}

static void test_initiate(void)
{
	static const char no_id[] = XMLDECL "<InitiateMultipartUploadResult" NS "><Bucket>b</Bucket>"
		"<Key>k</Key></InitiateMultipartUploadResult>";
	char *id = NULL;

	T_EQ_INT(s3_xml_parse_initiate(initiate_ok, LEN(initiate_ok), &id), 0);
	T_EQ_STR(id, "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA");
	free(id);
	T_EQ_INT(s3_xml_parse_initiate(no_id, LEN(no_id), &id), -EINVAL);
	T_CHECK(id == NULL);
	T_EQ_INT(s3_xml_parse_initiate(complete_ok, LEN(complete_ok), &id), -EINVAL);
	T_CHECK(id == NULL);
}

static void test_complete(void)
{
	struct s3_error e = { 0 };
	char etag[72] = "x";

	T_EQ_INT(s3_xml_parse_complete(complete_ok, LEN(complete_ok), etag, &e), 0);
	T_EQ_STR(etag, "3858f62230ac3c915f300c664312c11f-9");
	T_EQ_STR(e.code, "");
}

static void test_complete_error_200(void)
{
	struct s3_error e = { 0 };
	char etag[72] = "x";

	T_EQ_INT(s3_xml_parse_complete(complete_error, LEN(complete_error), etag, &e), -EIO);
	T_EQ_STR(e.code, "InternalError");
	T_EQ_STR(e.message, "We encountered an internal error. Please try again.");
	T_EQ_STR(etag, "");
	/* neither the result nor an Error */
	T_EQ_INT(s3_xml_parse_complete(copy_ok, LEN(copy_ok), etag, &e), -EINVAL);
	T_EQ_INT(s3_xml_parse_complete("<CompleteMultipartUploadResult>", 31, etag, &e), -EINVAL);
}

static void test_copy(void)
{
	struct s3_error e = { 0 };
	char etag[72];

	T_EQ_INT(s3_xml_parse_copy(copy_ok, LEN(copy_ok), etag, &e), 0);
	T_EQ_STR(etag, "9b2cf535f27731c974343645a3985328");
	T_EQ_INT(s3_xml_parse_copy(err_no_such_bucket, LEN(err_no_such_bucket), etag, &e), -EIO);
	T_EQ_STR(e.code, "NoSuchBucket");
	T_EQ_INT(s3_xml_parse_copy(complete_ok, LEN(complete_ok), etag, &e), -EINVAL);
}

static void test_list_parts(void)
{
	static const char stuck[] = XMLDECL "<ListPartsResult" NS "><NextPartNumberMarker>3"
		"</NextPartNumberMarker><IsTruncated>true</IsTruncated><Part><PartNumber>9"
		"</PartNumber><Size>1</Size></Part></ListPartsResult>";
	static const char no_marker[] = XMLDECL "<ListPartsResult><IsTruncated>true</IsTruncated>"
		"</ListPartsResult>";
	static const char bad_part[] = XMLDECL "<ListPartsResult><IsTruncated>false</IsTruncated>"
		"<Part><PartNumber>4</PartNumber><Size>1</Size></Part>"
		"<Part><PartNumber>0</PartNumber><Size>1</Size></Part></ListPartsResult>";
	struct s3_part *parts = NULL;
	size_t n = 0;
	bool truncated = false;
	int marker = 0;

	T_EQ_INT(s3_xml_parse_list_parts(parts_page1, LEN(parts_page1), &parts, &n, &truncated,
					 &marker), 0);
	T_CHECK(truncated);
	T_EQ_INT(marker, 2);
	T_EQ_INT(n, 2);
	T_EQ_INT(s3_xml_parse_list_parts(parts_page2, LEN(parts_page2), &parts, &n, &truncated,
					 &marker), 0);
	T_CHECK(!truncated);
	T_EQ_INT(marker, 3);
	T_EQ_INT(n, 3);
	if (n == 3) {
		T_EQ_INT(parts[0].number, 1);
		T_EQ_INT(parts[0].size, 8388608);
		T_EQ_STR(parts[0].etag, "7778aef83f66abc1fa1e8477f296d394");
		T_EQ_INT(parts[1].number, 2);
		T_EQ_STR(parts[1].etag, "aaaa18db4cc2f85cedef654fccc4a4x8");
		T_EQ_INT(parts[2].number, 3);
		T_EQ_INT(parts[2].size, 1234);
		T_EQ_STR(parts[2].etag, "0123456789abcdef0123456789abcdef");
	}
	/* truncated without moving forward: refused, nothing appended */
	T_EQ_INT(s3_xml_parse_list_parts(stuck, LEN(stuck), &parts, &n, &truncated, &marker),
		 -EINVAL);
	T_EQ_INT(s3_xml_parse_list_parts(no_marker, LEN(no_marker), &parts, &n, &truncated,
					 &marker), -EINVAL);
	T_EQ_INT(s3_xml_parse_list_parts(bad_part, LEN(bad_part), &parts, &n, &truncated, &marker),
		 -EINVAL);
	T_EQ_INT(s3_xml_parse_list_parts(uploads_two, LEN(uploads_two), &parts, &n, &truncated,
					 &marker), -EINVAL);
	T_EQ_INT(n, 3);
	T_EQ_INT(marker, 3);
	T_CHECK(!truncated);
	free(parts);
}

static void test_list_uploads(void)
{
	static const char bad[] = XMLDECL "<ListMultipartUploadsResult" NS "><IsTruncated>false"
		"</IsTruncated><NextKeyMarker>k</NextKeyMarker>"
		"<Upload><Key>ok</Key><UploadId>1</UploadId></Upload>"
		"<Upload><Key>no-id</Key></Upload></ListMultipartUploadsResult>";
	static const char last[] = XMLDECL "<ListMultipartUploadsResult" NS "><Bucket>jobs</Bucket>"
		"<KeyMarker>out/b.bin</KeyMarker><NextKeyMarker></NextKeyMarker>"
		"<EncodingType>url</EncodingType><IsTruncated>false</IsTruncated>"
		"<Upload><Key>out/c%20d.bin</Key><UploadId>c-3</UploadId>"
		"<Initiated>2024-02-29T00:00:00Z</Initiated></Upload></ListMultipartUploadsResult>";
	struct s3_upload *u = NULL;
	char *next_key = NULL, *next_id = NULL;
	bool truncated = false;
	size_t n = 0;

	T_EQ_INT(s3_xml_parse_list_uploads(uploads_two, LEN(uploads_two), &u, &n, &truncated,
					   &next_key, &next_id), 0);
	T_CHECK(truncated);
	T_EQ_STR(next_key, "out/b.bin");
	T_EQ_STR(next_id, "b-upload-2");
	T_EQ_INT(n, 2);
	if (n == 2) {
		T_EQ_STR(u[0].key, "out/a.bin");
		T_EQ_STR(u[0].upload_id, "a-upload-1");
		T_EQ_INT(u[0].initiated, T_2026_11_20_100000);
		T_EQ_STR(u[1].key, "out/b.bin");
		T_EQ_STR(u[1].upload_id, "b-upload-2");
		T_EQ_INT(u[1].initiated, T_2026_11_21_111111);
	}
	free(next_key);
	free(next_id);

	/* a bad page: nothing appended, no markers */
	T_EQ_INT(s3_xml_parse_list_uploads(bad, LEN(bad), &u, &n, &truncated, &next_key, &next_id),
		 -EINVAL);
	T_EQ_INT(n, 2);
	T_CHECK(next_key == NULL && next_id == NULL);

	/* the last page, url-encoded; an empty NextKeyMarker is no marker */
	T_EQ_INT(s3_xml_parse_list_uploads(last, LEN(last), &u, &n, &truncated, &next_key,
					   &next_id), 0);
	T_CHECK(!truncated);
	T_CHECK(next_key == NULL && next_id == NULL);
	T_EQ_INT(n, 3);
	if (n == 3) {
		T_EQ_STR(u[2].key, "out/c d.bin");
		T_EQ_INT(u[2].initiated, T_2024_02_29_000000);
	}
	free_uploads(u, n);
}

static void test_delete_result(void)
{
	static const char all_ok[] = XMLDECL "<DeleteResult" NS "><Deleted><Key>a</Key></Deleted>"
		"</DeleteResult>";
	struct s3_error e = { 0 };
	size_t n_err = 99;

	T_EQ_INT(s3_xml_parse_delete(delete_mixed, LEN(delete_mixed), &n_err, &e), 0);
	T_EQ_INT(n_err, 1);
	T_EQ_STR(e.code, "AccessDenied");
	T_EQ_STR(e.message, "secret/b.txt: Access Denied");

	memset(&e, 0, sizeof(e));
	T_EQ_INT(s3_xml_parse_delete(all_ok, LEN(all_ok), &n_err, &e), 0);
	T_EQ_INT(n_err, 0);
	T_EQ_STR(e.code, "");

	T_EQ_INT(s3_xml_parse_delete(err_no_such_bucket, LEN(err_no_such_bucket), &n_err, &e), -EIO);
	T_EQ_STR(e.code, "NoSuchBucket");
	T_EQ_INT(s3_xml_parse_delete(list_empty, LEN(list_empty), &n_err, &e), -EINVAL);
}

static void test_build_complete(void)
{
	const struct s3_part parts[] = {
		{ 1, 8388608, "7778aef83f66abc1fa1e8477f296d394" },
		{ 2, 8388608, "aaaa18db4cc2f85cedef654fccc4a4x8" },
		{ 3, 1234, "0123456789abcdef0123456789abcdef" },
	};
	char *s = s3_xml_build_complete(parts, 3);

	T_EQ_STR(s, "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
		 "<Part><PartNumber>1</PartNumber><ETag>&quot;7778aef83f66abc1fa1e8477f296d394&quot;</ETag></Part>"
		 "<Part><PartNumber>2</PartNumber><ETag>&quot;aaaa18db4cc2f85cedef654fccc4a4x8&quot;</ETag></Part>"
		 "<Part><PartNumber>3</PartNumber><ETag>&quot;0123456789abcdef0123456789abcdef&quot;</ETag></Part>"
		 "</CompleteMultipartUpload>");
	free(s);
}

static void test_build_delete(void)
{
	static const char *const keys[] = {
		"a&b", "<x>", "q\"uote", "it's", "caf\xC3\xA9/tab\there", "cr\rlf\n",
	};
	static const char *const bad_ctl[] = { "ok", "bad\x01key" };
	/* not UTF-8; overlong '/' (C0 AF, E0 80 AF), a surrogate, past U+10FFFF, cut short */
	static const char *const bad_utf8[] = { "bad\xFFkey", "a\xC0\xAF" "b", "a\xE0\x80\xAF" "b",
		"a\xED\xA0\x80" "b", "a\xF4\x90\x80\x80" "b", "a\xE2\x82" };
	static const char *const bad_nonchar[] = { "bad\xEF\xBF\xBEkey" };
	char *s = s3_xml_build_delete(keys, 6);

	T_EQ_STR(s, "<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Quiet>true</Quiet>"
		 "<Object><Key>a&amp;b</Key></Object>"
		 "<Object><Key>&lt;x&gt;</Key></Object>"
		 "<Object><Key>q&quot;uote</Key></Object>"
		 "<Object><Key>it&apos;s</Key></Object>"
		 "<Object><Key>caf\xC3\xA9/tab\there</Key></Object>"
		 "<Object><Key>cr&#13;lf\n</Key></Object>"
		 "</Delete>");
	free(s);

	errno = 0;
	T_CHECK(s3_xml_build_delete(bad_ctl, 2) == NULL);
	T_EQ_INT(errno, EINVAL);
	for (size_t i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++) {
		errno = 0;
		if (s3_xml_build_delete(&bad_utf8[i], 1) != NULL || errno != EINVAL)
			T_FAILF("bad_utf8[%zu] was not refused with EINVAL", i);
	}
	errno = 0;
	T_CHECK(s3_xml_build_delete(bad_nonchar, 1) == NULL);
	T_EQ_INT(errno, EINVAL);
}

static void test_iso8601(void)
{
	static const struct {
		const char *s;
		int rc;
		time_t t;
	} cases[] = {
		{ "2026-11-25T01:02:03.000Z", 0, T_2026_11_25_010203 },
		{ "2026-11-25T01:02:03Z", 0, T_2026_11_25_010203 },
		{ "2026-11-25T01:02:03.123456789Z", 0, T_2026_11_25_010203 },
		{ "2026-11-25t01:02:03z", 0, T_2026_11_25_010203 },
		{ "2026-11-25T01:02:03", 0, T_2026_11_25_010203 },	/* no zone: UTC */
		{ "2026-11-25T02:02:03+01:00", 0, T_2026_11_25_010203 },
		{ "2026-11-24T21:32:03.5-0330", 0, T_2026_11_25_010203 },
		{ "2024-02-29T00:00:00Z", 0, T_2024_02_29_000000 },
		{ "1970-01-01T00:00:00Z", 0, 0 },
		{ "2026-02-29T00:00:00Z", -EINVAL, 0 },
		{ "2026-04-31T00:00:00Z", -EINVAL, 0 },
		{ "2026-13-01T00:00:00Z", -EINVAL, 0 },
		{ "2026-11-25T24:00:00Z", -EINVAL, 0 },
		{ "2026-11-25T01:60:00Z", -EINVAL, 0 },
		{ "2026-11-25", -EINVAL, 0 },
		{ "2026-11-25T01:02:03.Z", -EINVAL, 0 },
		{ "2026-11-25T01:02:03Zjunk", -EINVAL, 0 },
		{ "2026-11-25T01:02:03+1", -EINVAL, 0 },
		{ "26-11-25T01:02:03Z", -EINVAL, 0 },
		{ " 2026-11-25T01:02:03Z", -EINVAL, 0 },
		{ "", -EINVAL, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		time_t t = 12345;
		int rc = s3_parse_iso8601(cases[i].s, &t);

		if (rc != cases[i].rc || (rc == 0 && t != cases[i].t) || (rc != 0 && t != 12345))
			T_FAILF("\"%s\": rc %d t %lld, expected rc %d t %lld", cases[i].s, rc,
				(long long)t, cases[i].rc, (long long)cases[i].t);
	}
}

static void test_http_date(void)
{
	static const struct {
		const char *s;
		int rc;
		time_t t;
	} cases[] = {
		{ "Wed, 25 Nov 2026 01:02:03 GMT", 0, T_2026_11_25_010203 },
		{ "Thu, 29 Feb 2024 00:00:00 GMT", 0, T_2024_02_29_000000 },
		{ "Thu, 01 Jan 1970 00:00:00 GMT", 0, 0 },
		{ "Wed, 25 Nov 2026 01:02:03 UTC", -EINVAL, 0 },
		{ "Wed, 25 Nov 2026 01:02:03 GMT ", -EINVAL, 0 },
		{ "Wed, 25 Nov 2026 01:02:03", -EINVAL, 0 },
		{ "Wednesday, 25-Nov-26 01:02:03 GMT", -EINVAL, 0 },	/* RFC 850: not taken */
		{ "Wed Nov 25 01:02:03 2026", -EINVAL, 0 },		/* asctime: not taken */
		{ "Wed, 5 Nov 2026 01:02:03 GMT", -EINVAL, 0 },
		{ "Wed, 31 Feb 2026 01:02:03 GMT", -EINVAL, 0 },
		{ "Wed, 25 Foo 2026 01:02:03 GMT", -EINVAL, 0 },
		{ "Wed, 25 Nov 2026 1:02:03 GMT", -EINVAL, 0 },
		{ "", -EINVAL, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		time_t t = 12345;
		int rc = s3_parse_http_date(cases[i].s, &t);

		if (rc != cases[i].rc || (rc == 0 && t != cases[i].t) || (rc != 0 && t != 12345))
			T_FAILF("\"%s\": rc %d t %lld, expected rc %d t %lld", cases[i].s, rc,
				(long long)t, cases[i].rc, (long long)cases[i].t);
	}
}

/* Every fixture cut at every length, through every parser: an error, never a crash or leak.
 * Each cut is copied to its own heap block so ASan sees a read past len. */
static void test_cut_short(void)
{
	static const struct {
		const char *xml;
		size_t len;
	} docs[] = {
		{ list_empty, LEN(list_empty) }, { list_truncated, LEN(list_truncated) },
		{ list_url, LEN(list_url) }, { list_prefixes, LEN(list_prefixes) },
		{ list_v1, LEN(list_v1) }, { err_no_such_bucket, LEN(err_no_such_bucket) },
		{ err_auth_region, LEN(err_auth_region) }, { initiate_ok, LEN(initiate_ok) },
		{ complete_ok, LEN(complete_ok) }, { complete_error, LEN(complete_error) },
		{ copy_ok, LEN(copy_ok) }, { parts_page1, LEN(parts_page1) },
		{ uploads_two, LEN(uploads_two) }, { delete_mixed, LEN(delete_mixed) },
	};
	size_t bad = 0;

	for (size_t d = 0; d < sizeof(docs) / sizeof(docs[0]); d++) {
		for (size_t len = 0; len < docs[d].len; len++) {
			char *cut = malloc(len ? len : 1), etag[72], *id = NULL, *nk = NULL, *ni = NULL;
			struct s3_list_page page;
			struct s3_error e = { 0 };
			struct s3_part *parts = NULL;
			struct s3_upload *u = NULL;
			size_t n = 0, nu = 0, n_err;
			bool tr;
			int marker = 0, rc[8];

			if (!cut)
				abort();
			memcpy(cut, docs[d].xml, len);
			rc[0] = s3_xml_parse_list(cut, len, &page);
			rc[1] = s3_xml_parse_error(cut, len, &e);
			rc[2] = s3_xml_parse_initiate(cut, len, &id);
			rc[3] = s3_xml_parse_complete(cut, len, etag, &e);
			rc[4] = s3_xml_parse_copy(cut, len, etag, &e);
			rc[5] = s3_xml_parse_list_parts(cut, len, &parts, &n, &tr, &marker);
			rc[6] = s3_xml_parse_list_uploads(cut, len, &u, &nu, &tr, &nk, &ni);
			rc[7] = s3_xml_parse_delete(cut, len, &n_err, &e);
			/* the only well-formed cuts drop trailing white space after the root */
			for (int i = 0; i < 8; i++)
				bad += rc[i] != -EINVAL && rc[i] != -EIO &&
				       !(rc[i] == 0 && docs[d].xml[len - 1] == '>');
			s3_list_page_release(&page);
			free(id);
			free(parts);
			free_uploads(u, nu);
			free(nk);
			free(ni);
			free(cut);
		}
	}
	T_EQ_INT(bad, 0);
}

static const struct t_case cases[] = {
	{ "list_empty", test_list_empty },
	{ "list_truncated", test_list_truncated },
	{ "list_url_encoded", test_list_url_encoded },
	{ "list_common_prefixes", test_list_common_prefixes },
	{ "list_v1_next_marker", test_list_v1_next_marker },
	{ "list_bad_input", test_list_bad },
	{ "list_long_etag", test_long_etag },
	{ "error_docs", test_error_docs },
	{ "error_long_message", test_error_long_message },
	{ "error_bad_input", test_error_bad },
	{ "initiate", test_initiate },
	{ "complete", test_complete },
	{ "complete_error_200", test_complete_error_200 },
	{ "copy", test_copy },
	{ "list_parts", test_list_parts },
	{ "list_uploads", test_list_uploads },
	{ "delete_result", test_delete_result },
	{ "build_complete", test_build_complete },
	{ "build_delete", test_build_delete },
	{ "iso8601", test_iso8601 },
	{ "http_date", test_http_date },
	{ "cut_short", test_cut_short },
};

T_MAIN(cases)
