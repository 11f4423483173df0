/* fsutil.h - small file-system helpers shared by the command line and the viewer.
 *
 * ew_mkdir_p creates a directory and its missing parents (like `mkdir -p`); 0 on success
 * (also when it exists), -1 with errno set otherwise (name too long: ENAMETOOLONG).
 *
 * ew_csv_keep_steps rewrites a per-step metrics CSV (a header line, then rows whose first
 * field is the step) so that it keeps the header and the complete rows of steps <= last_step,
 * atomically (temporary file, fsync, rename): a process killed during the rewrite leaves the
 * old file or the new one, never a truncated one. A missing file is not an error. 0, or -1
 * with a one-line message naming the file.
 */
#ifndef EW_FSUTIL_H
#define EW_FSUTIL_H

int ew_mkdir_p(const char *dir);
int ew_csv_keep_steps(const char *path, long last_step, char *err, int errlen);

#endif
