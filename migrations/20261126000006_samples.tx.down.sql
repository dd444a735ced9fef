DROP TABLE samples_1m;
--bun:split
DROP TABLE samples;
