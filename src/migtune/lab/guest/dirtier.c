/*
 * dirtier: the migtune lab guest's memory-dirtying program.
 *
 * Allocates a working set, makes every page of it resident and non-zero, then
 * writes pages at a given rate with a given pattern, changing a given number of
 * bytes per page per write.  Once per second it prints one machine-readable line
 * on stdout (the serial console), parsed by migtune.lab.guest.parse_serial_line:
 *
 *   dirtier: ready ws=268435456 pages=65536 touch_s=1.234
 *   dirtier: t=12.001 pages=16384 rate_pps=16380 rate_Bps=67092480 behind=0
 *
 * rate_Bps counts whole pages (pages/s x 4096), like the workload spec's rate;
 * behind is the number of pages the writer owes (only grows with catchup=1).
 *
 * Arguments (key=value, as the kernel command line dirt_* parameters without
 * the prefix): ws=BYTES rate=BYTES_PER_S|max pat=seq|random|hotcold
 * hot=FRACTION hotw=FRACTION bpp=1..4096 catchup=0|1 seed=N
 *
 * Static, no dependencies beyond libc: built with gcc -static -O2.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	/* xorshift64*: cheap and good enough to spread writes uniformly. */
	uint64_t x = rng_state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545f4914f6cdd1dull;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void say(const char *line)
{
	/* One write() per line so the heartbeat of init never splits it. */
	size_t n = strlen(line);
	while (n > 0) {
		ssize_t w = write(1, line, n);
		if (w <= 0)
			return;
		line += w;
		n -= (size_t)w;
	}
}

static void die(const char *msg)
{
	char buf[256];
	snprintf(buf, sizeof buf, "dirtier: error %s\n", msg);
	say(buf);
	exit(2);
}

/*
 * Add 1 to each of the first n bytes of the page, byte-wise (no carry between
 * bytes), so every byte in the range differs from its previous value: XBZRLE
 * then sees exactly n changed bytes in one run.
 */
static void dirty_page(unsigned char *p, unsigned n)
{
	const uint64_t lo = 0x7f7f7f7f7f7f7f7full, hi = 0x8080808080808080ull;
	const uint64_t ones = 0x0101010101010101ull;
	unsigned words = n / 8, i;
	uint64_t *q = (uint64_t *)p;
	for (i = 0; i < words; i++) {
		uint64_t x = q[i];
		q[i] = ((x & lo) + ones) ^ (x & hi);
	}
	for (i = words * 8; i < n; i++)
		p[i]++;
}

struct cfg {
	uint64_t ws;
	double rate; /* bytes/s of pages; < 0 = unlimited */
	int pat;     /* 0 seq, 1 random, 2 hotcold */
	double hot, hotw;
	unsigned bpp;
	int catchup;
};

static void parse(int argc, char **argv, struct cfg *c)
{
	int i;
	c->ws = 0;
	c->rate = 0;
	c->pat = 1;
	c->hot = 0.1;
	c->hotw = 0.9;
	c->bpp = 8;
	c->catchup = 0;
	for (i = 1; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		const char *k = argv[i], *v;
		if (!eq)
			die("expected key=value");
		*eq = 0;
		v = eq + 1;
		if (!strcmp(k, "ws"))
			c->ws = strtoull(v, NULL, 10);
		else if (!strcmp(k, "rate"))
			c->rate = !strcmp(v, "max") ? -1.0 : strtod(v, NULL);
		else if (!strcmp(k, "pat"))
			c->pat = !strcmp(v, "seq") ? 0 : !strcmp(v, "hotcold") ? 2 : 1;
		else if (!strcmp(k, "hot"))
			c->hot = strtod(v, NULL);
		else if (!strcmp(k, "hotw"))
			c->hotw = strtod(v, NULL);
		else if (!strcmp(k, "bpp"))
			c->bpp = (unsigned)strtoul(v, NULL, 10);
		else if (!strcmp(k, "catchup"))
			c->catchup = atoi(v) != 0;
		else if (!strcmp(k, "seed"))
			rng_state = strtoull(v, NULL, 10) | 1;
		/* unknown keys are ignored: newer hosts may pass more */
	}
	if (c->bpp < 1 || c->bpp > PAGE)
		die("bpp must be 1..4096");
}

int main(int argc, char **argv)
{
	struct cfg c;
	char line[256];
	uint64_t npages, nhot, i, seq = 0, period_pages = 0;
	unsigned char *mem;
	double t0, t, last_report, budget = 0, last_refill, page_rate, burst;

	parse(argc, argv, &c);
	npages = c.ws / PAGE;
	if (npages == 0)
		die("working set is empty");
	mem = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		   -1, 0);
	if (mem == MAP_FAILED)
		die("cannot allocate the working set (guest RAM too small?)");

	/* Touch every page once with distinct non-zero bytes: resident, never a zero page. */
	t0 = now();
	for (i = 0; i < npages; i++) {
		unsigned char *p = mem + i * PAGE;
		unsigned j;
		for (j = 0; j < PAGE; j += 8) {
			uint64_t v = (i * 0x100000001b3ull + j) | 0x0101010101010101ull;
			memcpy(p + j, &v, 8);
		}
	}
	t = now();
	snprintf(line, sizeof line, "dirtier: ready ws=%llu pages=%llu touch_s=%.3f\n",
		 (unsigned long long)(npages * PAGE), (unsigned long long)npages, t - t0);
	say(line);

	nhot = (uint64_t)(c.hot * (double)npages);
	if (nhot < 1)
		nhot = 1;
	if (nhot > npages)
		nhot = npages;
	page_rate = c.rate > 0 ? c.rate / PAGE : 0;
	/*
	 * Token bucket.  Without catchup the bucket holds at most 10 ms of writes:
	 * short pauses (a busy host descheduling the vCPU) are made up, longer ones
	 * are lost.  Auto-converge at p % sleeps the vCPU p/(100-p) x 10 ms per 10 ms
	 * it runs, so from about 50 % on the writer loses most of the throttled time.
	 * With catchup the debt is unbounded and the writer runs flat out until it
	 * has paid it, so throttling only slows it once it runs out of CPU.
	 */
	burst = page_rate * 0.01 > 1 ? page_rate * 0.01 : 1;
	t0 = now();
	last_report = t0;
	last_refill = t0;

	for (;;) {
		uint64_t batch = 256, k;
		t = now();
		if (t - last_report >= 1.0) {
			double dt = t - last_report;
			double pps = (double)period_pages / dt;
			snprintf(line, sizeof line,
				 "dirtier: t=%.3f pages=%llu rate_pps=%.0f rate_Bps=%.0f behind=%.0f\n",
				 t - t0, (unsigned long long)period_pages, pps, pps * PAGE,
				 budget > 1 ? budget - 1 : 0);
			say(line);
			period_pages = 0;
			last_report = t;
		}
		if (c.rate < 0) {
			batch = 256;
		} else if (page_rate <= 0) {
			sleep(1);
			continue;
		} else {
			budget += (t - last_refill) * page_rate;
			last_refill = t;
			if (!c.catchup && budget > burst)
				budget = burst;
			if (budget < 1) {
				/* Sleep until the next page is due, but at most 10 ms. */
				double wait = (1 - budget) / page_rate;
				struct timespec ts;
				if (wait > 0.01)
					wait = 0.01;
				ts.tv_sec = 0;
				ts.tv_nsec = (long)(wait * 1e9);
				nanosleep(&ts, NULL);
				continue;
			}
			batch = (uint64_t)budget;
			if (batch > 256)
				batch = 256;
			budget -= (double)batch;
		}
		for (k = 0; k < batch; k++) {
			uint64_t pg;
			if (c.pat == 0) {
				pg = seq;
				if (++seq == npages)
					seq = 0;
			} else if (c.pat == 1) {
				pg = rng() % npages;
			} else if ((double)(rng() >> 11) * 0x1p-53 < c.hotw || nhot == npages) {
				pg = rng() % nhot;
			} else {
				pg = nhot + rng() % (npages - nhot);
			}
			dirty_page(mem + pg * PAGE, c.bpp);
		}
		period_pages += batch;
	}
	return 0;
}
