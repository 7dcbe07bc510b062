FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml constraints.txt README.md alembic.ini ./
COPY hibachi ./hibachi
COPY agent ./agent
COPY telephony ./telephony
COPY knowledge ./knowledge
COPY booking_tools ./booking_tools
COPY evals ./evals
RUN pip install --no-cache-dir -c constraints.txt .
ENV HIBACHI_DATA_DIR=/data
EXPOSE 8000
CMD ["hibachi", "serve", "--host", "0.0.0.0", "--port", "8000"]
