DROP TABLE install_jobs;
